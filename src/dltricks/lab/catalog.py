# ruff: noqa: E501  (the catalog quotes the guide verbatim, one bullet per entry)
"""The tip catalog: every claim-bearing bullet of the guide, with its status in the lab.

The guide (``shared/seed/tips-and-tricks.md``) is a list of bullets under bold section headings.
Each bullet that makes a claim is one :class:`Tip` here: a stable id, the section, the bullet's
text exactly as the guide has it (``guide``, normalised by :func:`normalize`), the claim in our
words and the components that realise it. A bullet that only names a sub-heading ("Receptive
Field Comparison:", "**Transformers:**") is no claim and has no entry; the comparison table of
the guide's "Strengths and Weaknesses" section has no bullets and repeats claims listed here.

Status is derived, never typed in: ``measured`` when a registered experiment lists the tip,
``analysis`` when a computation checks it without training (the lab's analyses, and in
:mod:`dltricks.coverage` also the comparison's claims), ``not measured`` otherwise.
:func:`parse_guide` reads the guide's bullets, so a test can check that the catalog covers every
one of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_HEADING_MAX_WORDS = 6


def normalize(text: str) -> str:
    """Guide text without markdown emphasis and with single spaces (the catalog's key)."""
    text = text.replace("**", "").replace("*", "").replace("`", "")
    return re.sub(r"\s+", " ", text).strip()


def _is_heading(text: str) -> bool:
    return text.endswith(":") and len(text.split()) <= _HEADING_MAX_WORDS


@dataclass(frozen=True)
class GuideBullet:
    """One claim-bearing bullet of the guide."""

    section: str
    subsection: str | None
    text: str


def parse_guide(markdown: str) -> list[GuideBullet]:
    """The claim-bearing bullets of the guide, in order.

    Rules: a line ``**Title**`` or ``**Title:**`` (not a list item) starts a section; a list item
    (``-`` or ``*``) whose text ends with ``:`` and has at most six words is a sub-heading; any
    other list item is a claim, continued by the following more-indented non-item lines. Table
    rows and rules (``---``) are skipped.

    Args:
        markdown: the guide's text.

    Returns:
        One :class:`GuideBullet` per claim, ``text`` normalised with :func:`normalize`.
    """
    out: list[GuideBullet] = []
    section, raw_title, part = "", "", ""
    sub: tuple[int, str] | None = None
    cur: list[Any] | None = None  # [section, subsection, text, indent]
    bullets_in_section = 0

    def flush() -> None:
        nonlocal cur
        if cur is not None and not _is_heading(normalize(cur[2])):
            out.append(GuideBullet(cur[0], cur[1], normalize(cur[2])))
        cur = None

    for line in markdown.splitlines():
        s = line.strip()
        if not s or s.startswith("|") or set(s) <= {"-"}:
            flush()
            continue
        indent = len(line) - len(line.lstrip())
        item = re.match(r"^[-*]\s+(.*)$", s)
        if item:
            flush()
            body = normalize(item.group(1))
            while sub is not None and indent <= sub[0] and not _is_heading(body):
                sub = None
            if _is_heading(body):
                sub = (indent, body.rstrip(":").strip())
            cur = [section, sub[1] if sub else None, item.group(1), indent]
            bullets_in_section += 1
            continue
        if s.startswith("**"):
            flush()
            title = normalize(s).rstrip(":").strip()
            if bullets_in_section == 0 and raw_title and not raw_title[0].isdigit():
                part = raw_title  # a heading directly followed by numbered sub-sections
            raw_title = title
            if title[:1].isdigit() and part:
                title = f"{part}: {title}"
            section, sub, bullets_in_section = title, None, 0
            continue
        if cur is not None and indent > cur[3]:
            cur[2] += " " + s
            continue
        flush()
    flush()
    return out


@dataclass(frozen=True)
class Tip:
    """One claim of the guide.

    Args:
        id: stable id (kebab-case) used by experiments and ``--tips``.
        section: the guide section the bullet is in.
        guide: the bullet's text, normalised (:func:`normalize`): the link to the guide.
        claim: what the bullet claims, in our words (testable where possible).
        components: the dltricks components that realise the tip.
    """

    id: str
    section: str
    guide: str
    claim: str
    components: tuple[str, ...]


def _t(id: str, section: str, guide: str, claim: str, components: tuple[str, ...]) -> Tip:
    return Tip(id, section, guide, claim, components)


# fmt: off
TIPS: tuple[Tip, ...] = (
    _t('arch-match-problem', 'Architecture Design and Basics',
       'Choose an appropriate architecture based on the problem: CNNs for image tasks, RNNs/LSTMs/GRUs for sequential data, Transformers for sequences and attention-based tasks, etc.',
       'Match the architecture family to the data: CNNs for images, recurrent nets or Transformers for sequences.',
       ('models.small_cnn', 'models.gru_classifier', 'models.mamba')),
    _t('arch-start-simple', 'Architecture Design and Basics',
       'Start with simpler architectures and gradually increase complexity if needed.',
       'Begin with a simple model and add capacity only when the simple one underfits.',
       ('models.mlp', 'models.small_cnn')),
    _t('arch-select-by-resources', 'Architecture Design and Basics',
       'Model selection should be driven by the size of your dataset, available resources, and problem domain.',
       'The right model depends on dataset size, compute budget and domain.',
       ('models',)),
    _t('cnn-large-kernels-costly', 'Convolutional Neural Networks (CNNs)',
       'Larger filter sizes (7x7, 5x5) capture more complex features but are computationally expensive.',
       '7x7/5x5 kernels see more per layer but cost more parameters and MACs than 3x3.',
       ('nn.conv_blocks',)),
    _t('cnn-stacked-3x3', 'Convolutional Neural Networks (CNNs)',
       'Smaller filter sizes (3x3) with multiple layers can achieve similar receptive fields with fewer parameters.',
       'Stacks of 3x3 convolutions reach the receptive field of one large kernel with fewer parameters.',
       ('nn.conv_blocks', 'analysis.receptive_field')),
    _t('cnn-padding', 'Convolutional Neural Networks (CNNs)',
       'Padding helps retain spatial dimensions and is essential for preserving information at the edges.',
       "'Same' padding keeps the spatial size and lets border pixels contribute.",
       ('nn.conv_blocks',)),
    _t('kernel-rf-growth', 'Smaller or Larger Kernel Size in CNNs',
       'Convolution layers with 5x5 or 7x7 kernels tend to increase receptive field faster than their 3x3 versions. However, many state of the art architectures prefer to use 3x3 convolution layers. To reach enough receptive field compared to larger kernels, they generally deploy multiple layers. In the below, you can see the receptive field covered by convolution layers with different kernel sizes',
       'Larger kernels grow the receptive field faster per layer; modern nets stack 3x3 layers instead.',
       ('nn.conv_blocks', 'analysis.receptive_field')),
    _t('rf-two-3x3', 'Smaller or Larger Kernel Size in CNNs',
       '2 consecutive 3x3 conv layers = 1 5x5 conv layer',
       'Two stacked 3x3 convolutions have the receptive field of one 5x5.',
       ('analysis.receptive_field',)),
    _t('rf-three-3x3', 'Smaller or Larger Kernel Size in CNNs',
       '3 consecutive 3x3 conv layers = 1 7x7 Conv Layer',
       'Three stacked 3x3 convolutions have the receptive field of one 7x7.',
       ('analysis.receptive_field',)),
    _t('small-kernels-advantages', 'Smaller or Larger Kernel Size in CNNs',
       'In fact, using multiple conv layers with small kernel instead of single layer with larger kernel introduces some advantages:',
       'Several small-kernel layers have advantages over one large-kernel layer.',
       ('nn.conv_blocks',)),
    _t('small-kernels-more-nonlinearity', 'Smaller or Larger Kernel Size in CNNs',
       'Going through multiple non-linear activations instead of single one, this makes decision function in the model more discriminative',
       'More layers mean more nonlinearities, a more discriminative decision function.',
       ('models.small_cnn',)),
    _t('small-kernels-fewer-params', 'Smaller or Larger Kernel Size in CNNs',
       'Number of parameters and computations would be decreased in small kernels. Working with larger kernels especially in 3D domain like medical imaging is a bad decision. Small kernels are highly recommended at this point.',
       'Small kernels cut parameters and MACs, above all in 3-D (medical) networks.',
       ('analysis.complexity(params, MACs)', 'models.cnn3d')),
    _t('depth-by-rf', 'Receptive Field and Layer Depth',
       "Decide the number of layers based on the problem's complexity and desired receptive field.",
       'Choose depth from task complexity and the receptive field it needs.',
       ('analysis.receptive_field',)),
    _t('rf-ratio-depth', 'Receptive Field and Layer Depth',
       'Receptive field ratio guides the depth of the network, balancing between local and global features.',
       'The ratio of receptive field to input size guides depth (local vs global features).',
       ('analysis.receptive_field',)),
    _t('stride-pool-rf', 'Striding and Pooling',
       'Strided convolution and pooling operations help to increase receptive field, thereby learning long-range dependencies.',
       'Strided convolution and pooling grow the receptive field and help long-range dependencies.',
       ('nn.pool', 'analysis.receptive_field')),
    _t('stride-pool-cost', 'Striding and Pooling',
       'While doing these, they also reduce spatial dimension of input. In that way, computational cost would be decreased.',
       'Downsampling shrinks feature maps and so the compute of later layers.',
       ('analysis.complexity(params, MACs)',)),
    _t('downsample-skip-segmentation', 'Striding and Pooling',
       'However, reduced feature maps start to loose fine-grained information (low-level details) like boundaries and edges of organs. This decreases the quality of segmentation; hence, using skip connection can be good alternative to handle this problem.',
       'Downsampling loses fine detail (boundaries), hurting segmentation; skip connections restore it.',
       ('models.seg', 'data.segmentation(seg2d)')),
    _t('multiscale-two-views', 'Multi-Scale Input Processing',
       'Multi-scale input processing provides a way to look at and investigate the input image from two different perspectives.',
       'Multi-scale input processing looks at the image at two resolutions.',
       ('nn.multiscale',)),
    _t('multiscale-parallel-paths', 'Multi-Scale Input Processing',
       'In this scheme, input image is convolved with two parallel convolution pathways just like in siamese architectures.',
       'The image goes through two parallel convolution pathways, as in siamese networks.',
       ('nn.multiscale',)),
    _t('multiscale-local-global', 'Multi-Scale Input Processing',
       'While the first pathway operates on input image in normal resolution, which extracts detailed local appearance based features, the second branch processes same image in smaller size to come up with high level, more generalized features.',
       'A full-resolution path gives local detail, a downsampled path gives context.',
       ('nn.multiscale',)),
    _t('multiscale-reference', 'Multi-Scale Input Processing',
       'Reference Paper: "Efficient multi-scale 3D CNN with fully connected CRF for accurate brain lesion segmentation"',
       'Reference: Kamnitsas et al. 2017 (DeepMedic) for the dual-pathway design.',
       ('nn.multiscale',)),
    _t('atrous-rf-resolution', 'Atrous (Dilated) Convolutions',
       'Atrous convolution is capable of increasing receptive field of feature maps without reducing resolution, so it is suitable for retaining fine-grained details in segmentation tasks.',
       'Dilated convolutions grow the receptive field without losing resolution (good for segmentation).',
       ('nn.conv_blocks', 'nn.pool(ASPP)')),
    _t('pooling-invariance-segmentation', 'Pooling and Segmentation',
       'Pooling extracts geometrically invariant features but might affect segmentation tasks negatively.',
       'Pooling buys geometric invariance but can hurt segmentation.',
       ('nn.pool', 'models.seg')),
    _t('skip-preserve-detail', 'Pooling and Segmentation',
       'Skip connections help preserve spatial details while still leveraging hierarchical features.',
       'Skip connections keep spatial detail while using hierarchical features.',
       ('models.seg', 'nn.residual')),
    _t('bn-stabilizes', 'Batch Normalization (Batch-Norm)',
       'Batch normalization stabilizes training by normalizing inputs to each layer, improving convergence and generalization.',
       'Batch normalization speeds up and stabilizes convergence and improves final accuracy.',
       ('nn.factory(norm=batch)', 'models.small_cnn(norm=batch)')),
    _t('bn-before-activation', 'Batch Normalization (Batch-Norm)',
       'Usually placed before activation functions (convolution, ReLU) for better performance.',
       'Put the normalization before the activation (conv → BN → ReLU) rather than after it.',
       ('models.small_cnn(norm_order)',)),
    _t('dwsep-cheaper', 'Depth-wise Separable Convolutions',
       'Depth-wise separable convolutions reduce computational complexity by splitting spatial and channel convolutions.',
       'Depthwise separable convolutions cut parameters and MACs by splitting spatial and channel mixing.',
       ('nn.conv_blocks(groups)', 'analysis.complexity(params, MACs)')),
    _t('dwsep-low-resource', 'Depth-wise Separable Convolutions',
       'Suitable for scenarios with limited computational resources.',
       'Depthwise separable convolutions suit low-resource settings.',
       ('analysis.complexity(latency)',)),
    _t('attention-improves', 'Attention Mechanisms',
       'Attention mechanisms enhance model performance by focusing on relevant parts of the input sequence or image.',
       'Attention improves accuracy by focusing on the relevant parts of the input.',
       ('nn.attention',)),
    _t('self-attention-long-range', 'Attention Mechanisms',
       'Self-attention mechanisms are particularly useful for capturing long-range dependencies.',
       'Self-attention captures long-range dependencies.',
       ('nn.attention', 'data.sequence_tasks')),
    _t('clip-exploding', 'Gradient Clipping',
       'Gradient clipping prevents exploding gradients during training by capping gradient values.',
       'Gradient clipping prevents exploding gradients and divergence.',
       ('train.clip',)),
    _t('lr-anneal', 'Learning Rate Annealing',
       'Gradually reduce the learning rate during training to fine-tune model convergence.',
       'Decaying the learning rate over training improves final convergence.',
       ('train.schedules',)),
    _t('lr-anneal-techniques', 'Learning Rate Annealing',
       'Techniques like step decay, cosine annealing, and one-cycle learning rates can be beneficial.',
       'Step decay, cosine annealing and one-cycle schedules beat a constant learning rate.',
       ('train.schedules(step|cosine|onecycle)',)),
    _t('norm-variants', 'Normalization Techniques',
       'Apart from batch normalization, explore layer normalization and instance normalization for different scenarios.',
       'Layer and instance normalization are alternatives to batch normalization for some settings (e.g. small batches).',
       ('nn.factory(norm=layer|instance|group)',)),
    _t('norm-stabilize-generalize', 'Normalization Techniques',
       'Normalization techniques help stabilize training and improve generalization.',
       'Normalization layers stabilize training and improve generalization.',
       ('nn.factory(norm)',)),
    _t('ls-overconfidence', 'Label Smoothing',
       'Introduce a small amount of noise to ground-truth labels to prevent the model from becoming overconfident in predictions.',
       'Label smoothing makes the model less over-confident.',
       ('train.losses(label_smoothing)',)),
    _t('ls-generalize-calibrate', 'Label Smoothing',
       'Label smoothing can lead to better generalization and calibration of model probabilities.',
       'Label smoothing improves accuracy and calibration (ECE).',
       ('train.losses(label_smoothing)', 'train.metrics(ECE)')),
    _t('oneshot-few-examples', 'One-Shot Learning',
       'Develop models that can learn from just a few examples, which is particularly useful for tasks with limited training data.',
       'Learn new classes from a few examples.',
       ('methods.metric',)),
    _t('oneshot-siamese-metric', 'One-Shot Learning',
       'Siamese networks and metric learning techniques can be employed for one-shot learning.',
       'Siamese networks and metric learning enable one-shot learning.',
       ('methods.metric', 'methods.metric(pytorch-metric-learning)')),
    _t('zeroshot-unseen', 'Zero-Shot Learning',
       'Zero-shot learning involves training a model to recognize classes it has never seen during training.',
       'Zero-shot learning recognizes classes unseen in training.',
       ('methods.zeroshot',)),
    _t('zeroshot-semantic', 'Zero-Shot Learning',
       'This is achieved by leveraging auxiliary information or semantic embeddings.',
       'Zero-shot learning works through auxiliary information or semantic embeddings.',
       ('methods.zeroshot', 'methods.zeroshot(MiniLM)')),
    _t('spp-multiscale', 'SPP Layer (Spatial Pyramid Pooling)',
       'SPP layers capture information at multiple scales, improving object detection by handling various object sizes.',
       'Spatial pyramid pooling captures several scales and handles varied object sizes.',
       ('nn.pool(SPP)',)),
    _t('residual-gradient-flow', 'Residual Networks (ResNets) and Skip Connections',
       'Residual connections facilitate gradient flow and alleviate vanishing gradient issues.',
       'Residual connections improve gradient flow and relieve vanishing gradients.',
       ('nn.residual', 'models.small_cnn(residual)')),
    _t('skip-deeper-no-degradation', 'Residual Networks (ResNets) and Skip Connections',
       'Skip connections help build deeper networks without suffering from degradation problems.',
       'Skip connections let deeper networks train without degradation.',
       ('nn.residual',)),
    _t('topology-guides-design', 'Topological and Geometric Insights',
       'Understand the topology of the data to guide architecture design.',
       "Let the data's topology guide the architecture.",
       ('models',)),
    _t('invariance-not-always', 'Topological and Geometric Insights',
       'Geometric invariance might not always be desirable, especially in tasks like segmentation.',
       'Geometric invariance is not always wanted, e.g. in segmentation.',
       ('models.seg',)),
    _t('relu-vanishing', 'Backpropagation and Optimization',
       'Use activation functions (ReLU, Leaky ReLU) to avoid vanishing gradients and improve convergence.',
       'ReLU and Leaky ReLU avoid vanishing gradients and converge better than sigmoid/tanh in deep nets.',
       ('nn.factory(act)', 'models.mlp(act)')),
    _t('optimizers-faster', 'Backpropagation and Optimization',
       'Employ optimization techniques like Adam, RMSProp, or SGD with momentum for faster convergence.',
       'Adam, RMSprop and SGD with momentum converge faster than plain SGD.',
       ('train.optim',)),
    _t('lr-schedule-explore', 'Backpropagation and Optimization',
       'Learning rate scheduling can help in balancing exploration and exploitation during training.',
       'Learning-rate schedules balance exploration (high lr) and exploitation (low lr).',
       ('train.schedules',)),
    _t('reg-l2-dropout-bn', 'Regularization and Dropout',
       'Regularization techniques like L2 regularization, dropout, and batch normalization help prevent overfitting.',
       'L2 regularization, dropout and batch normalization reduce overfitting.',
       ('train.optim(weight_decay)', 'models(dropout)', 'nn.factory(norm)')),
    _t('dropout-moderation', 'Regularization and Dropout',
       'Apply dropout in moderation to prevent underfitting.',
       'Moderate dropout helps; heavy dropout underfits.',
       ('models(dropout)',)),
    _t('hparam-explore', 'Hyperparameter Tuning',
       'Experiment with learning rates, batch sizes, and network architectures.',
       'Tune learning rate, batch size and architecture.',
       ('train.lr_find', 'search')),
    _t('hparam-search-methods', 'Hyperparameter Tuning',
       'Utilize techniques like random search or Bayesian optimization for efficient hyperparameter tuning.',
       'Random search and Bayesian optimization tune hyperparameters efficiently.',
       ('search.tune(Optuna)',)),
    _t('nas-automates', 'Neural Architecture Search (NAS)',
       'NAS automates the process of finding optimal neural network architectures.',
       'NAS automates architecture design.',
       ('search.nas',)),
    _t('nas-methods', 'Neural Architecture Search (NAS)',
       'Techniques like reinforcement learning and evolutionary algorithms are used for NAS.',
       'Reinforcement learning and evolutionary algorithms are NAS techniques.',
       ('search.nas',)),
    _t('compress-size-latency', 'Quantization and Model Compression',
       'Reduce model size and inference latency through techniques like quantization and pruning.',
       'Quantization and pruning reduce model size and latency.',
       ('compress.quantize', 'compress.prune', 'compare.edge(int8 size and latency, measured)',
        'benchmarks/mamba_edge.py(measured)')),
    _t('compress-definitions', 'Quantization and Model Compression',
       'Quantization involves representing weights with fewer bits, while pruning removes less important connections.',
       'Quantization uses fewer bits per weight; pruning removes unimportant connections.',
       ('compress.quantize', 'compress.prune')),
    _t('da-adapt', 'Domain Adaptation',
       'Adapt a model trained on one domain to perform well on a different but related domain.',
       'Adapt a model to a different but related domain.',
       ('methods.domain', 'data.mnist1d(shift)')),
    _t('da-techniques', 'Domain Adaptation',
       'Techniques like domain adversarial training and self-training can be used for domain adaptation.',
       'Domain-adversarial training and self-training adapt across domains.',
       ('methods.domain',)),
    _t('ssl-unlabeled', 'Semi-Supervised Learning',
       'Combine labeled and unlabeled data to improve model performance, especially when labeled data is scarce.',
       'Unlabeled data improves accuracy when labels are scarce.',
       ('methods.semi',)),
    _t('ssl-techniques', 'Semi-Supervised Learning',
       'Techniques like pseudo-labeling and consistency regularization are common in semi-supervised learning.',
       'Pseudo-labeling and consistency regularization are common semi-supervised methods.',
       ('methods.semi',)),
    _t('gp-uncertainty', 'Gaussian Processes in Bayesian Deep Learning',
       'Utilize Gaussian processes for uncertainty estimation and probabilistic modeling in deep learning.',
       'Gaussian processes give uncertainty estimates in deep learning.',
       ('methods.bayes(gpytorch)',)),
    _t('bnn-vi-uncertainty', 'Gaussian Processes in Bayesian Deep Learning',
       'Bayesian neural networks and variational inference techniques also contribute to uncertainty quantification.',
       'Bayesian networks and variational inference also quantify uncertainty.',
       ('methods.bayes',)),
    _t('aug-diversity', 'Data Augmentation',
       'Apply data augmentation techniques (rotation, cropping, flipping) to increase the diversity of the training data.',
       'Augmentation (rotation, cropping, flipping) increases training-data diversity.',
       ('data.augment',)),
    _t('aug-generalization', 'Data Augmentation',
       'Augmentation helps improve model generalization.',
       'Augmentation improves generalization, most of all with little data.',
       ('data.augment',)),
    _t('transfer-pretrained', 'Transfer Learning and Pretrained Models',
       'Utilize pretrained models and fine-tuning to leverage features learned on large datasets.',
       'Fine-tuning pretrained models reuses features learned on large data.',
       ('methods.transfer', 'methods.zeroshot(MiniLM)')),
    _t('transfer-adapt', 'Transfer Learning and Pretrained Models',
       'Adapt pretrained models to your specific task to improve convergence and performance.',
       'Adapting a pretrained model converges faster and performs better than training from scratch.',
       ('methods.transfer',)),
    _t('meta-learn-to-learn', 'Meta-Learning',
       'Meta-learning involves training models to learn how to learn new tasks more efficiently.',
       'Meta-learning trains models to learn new tasks efficiently.',
       ('methods.meta',)),
    _t('meta-maml-fewshot', 'Meta-Learning',
       'Few-shot learning and model-agnostic meta-learning (MAML) are common meta-learning approaches.',
       'Few-shot learning and MAML are common meta-learning approaches.',
       ('methods.meta (torch.func)',)),
    _t('meta-experiment', 'Meta-Learning',
       'Experiment with different meta-learning algorithms and adaptation strategies.',
       'Try several meta-learning algorithms and adaptation strategies.',
       ('methods.meta',)),
    _t('kd-student-teacher', 'Knowledge Distillation',
       'Train compact "student" models to mimic the behavior of larger "teacher" models.',
       'Train a small student to mimic a large teacher.',
       ('methods.distill',)),
    _t('kd-transfer', 'Knowledge Distillation',
       'Knowledge distillation helps transfer knowledge from complex models to smaller ones.',
       'Distillation transfers knowledge from large to small models.',
       ('methods.distill',)),
    _t('kd-temperature', 'Knowledge Distillation',
       'Experiment with different temperature settings and loss functions for effective distillation.',
       'Temperature and loss choice matter for distillation.',
       ('methods.distill',)),
    _t('tf-long-range', 'Transformers',
       'Transformers are attention-based architectures that excel at modeling long-range dependencies in sequential and structured data (e.g., text, images, videos). They replace recurrence and convolution with self-attention mechanisms, enabling parallel processing and scalability.',
       'Transformers model long-range dependencies with self-attention and parallelize well.',
       ('models.transformer',)),
    _t('tf-self-attention', 'Transformers',
       'Computes weighted interactions between all input tokens, dynamically focusing on relevant context. Multi-head attention extends this by capturing diverse relationships in parallel.',
       'Self-attention weighs all token pairs; multiple heads capture different relations.',
       ('nn.attention(MHSA)',)),
    _t('tf-positional-encoding', 'Transformers',
       'Injects spatial/temporal order into input embeddings (e.g., sine/cosine functions or learned embeddings) since Transformers lack inherent sequential bias.',
       'Positional encodings (sinusoidal or learned) give Transformers order information.',
       ('nn.position',)),
    _t('tf-scalability', 'Transformers',
       'Pretrained on massive datasets (e.g., BERT for NLP, ViT for vision), Transformers transfer well to downstream tasks via fine-tuning. Larger models (e.g., GPT-4) achieve state-of-the-art results but require significant computational resources.',
       'Pretrained Transformers transfer well; bigger ones are better but costly.',
       ('methods.transfer',)),
    _t('tf-efficient-attention', 'Transformers',
       'Techniques like sparse attention, axial attention, or memory-efficient variants (e.g., Linformer) reduce the quadratic complexity of self-attention for long sequences.',
       'Sparse, axial and Linformer attention reduce the quadratic cost on long sequences.',
       ('nn.efficient_attention',)),
    _t('tf-pretrain-adapters', 'Transformers',
       'Start with pretrained models (e.g., Hugging Face’s Transformers library) and fine-tune on domain-specific data. Use task-specific adapters to avoid full retraining.',
       'Fine-tune pretrained models; adapters avoid full retraining.',
       ('methods.transfer.apply_lora(LoRA adapters)',
        'models.minilm_classifier(pretrained all-MiniLM-L6-v2, PEFT LoRA)')),
    _t('tf-sequence-length', 'Transformers',
       'For long inputs, truncate, chunk, or use hierarchical attention. FlashAttention or mixed-precision training can optimize GPU memory usage.',
       'Truncate, chunk or use hierarchical attention for long inputs; FlashAttention/mixed precision save memory.',
       ('nn.attention', 'train(precision)')),
    _t('tf-hybrid-cnn', 'Transformers',
       'Combine CNNs (local features) with Transformers (global context) in vision tasks (e.g., Swin Transformer, ConvNeXt).',
       'Hybrid CNN + Transformer models combine local features with global context in vision.',
       ('models.hybrid',)),
    _t('tf-warmup-decay', 'Transformers',
       'Apply learning rate warmup (gradually increasing LR) to stabilize early training. Follow with cosine decay for convergence.',
       'Learning-rate warmup stabilizes early training at a high learning rate; then decay with cosine.',
       ('train.schedules(warmup_steps, cosine)',)),
    _t('tf-regularization-prenorm', 'Transformers',
       'Use dropout in attention layers and feed-forward networks. Layer normalization before (not after) residual connections often improves stability.',
       'Dropout in attention/FFN; pre-norm (LayerNorm before the residual branch) is more stable than post-norm.',
       ('models.transformer(prenorm)',)),
    _t('tf-hardware', 'Transformers',
       'Leverage tensor cores (FP16/AMP) and model parallelism (e.g., pipeline or tensor sharding) for large models.',
       'Tensor cores (FP16/AMP) and model parallelism speed up large models.',
       ('train(precision)', 'train.distributed')),
    _t('mamba-overview', 'Mamba',
       'The Mamba Model Architecture is designed to optimize performance through efficient resource usage and robust feature extraction. It integrates dynamic scaling and attention mechanisms to balance speed and accuracy.',
       "The guide's 'Mamba' adapts depth and width and integrates attention (not the published Mamba, a selective SSM).",
       ('nn.ssm', 'models.mamba')),
    _t('mamba-dynamic-scaling', 'Mamba',
       'Adjusts model depth and width based on the complexity of the input data.',
       'Depth/width adapt to input complexity (realized here as early exit / layer skipping).',
       ('models.mamba(dynamic depth)',)),
    _t('mamba-integrated-attention', 'Mamba',
       'Focuses on key features during inference for improved decision-making.',
       'Attention modules focus on key features (realized here as hybrid Mamba+attention stacks).',
       ('models.mamba(hybrid)',)),
    _t('mamba-memory-efficiency', 'Mamba',
       'Optimizes computational resources, making it suitable for deployment in resource-constrained environments.',
       'Mamba is memory-efficient and suits constrained deployment.',
       ('compare.complexity(cost against length)',)),
    _t('mamba-pretraining', 'Mamba',
       'Pretrain the Mamba model on similar tasks to capture domain-specific features, then fine-tune for your application.',
       'Pretrain Mamba on a related task, then fine-tune.',
       ('methods.transfer', 'models.mamba')),
    _t('mamba-mixed-precision', 'Mamba',
       'Reduce computational load and speed up training while maintaining accuracy by using mixed precision techniques.',
       'Mixed precision speeds up Mamba training at equal accuracy.',
       ('train(precision)',)),
    _t('mamba-monitor-scaling', 'Mamba',
       'Regularly analyze how dynamic scaling adjusts the model’s architecture during training to ensure it aligns with task complexity.',
       'Monitor how dynamic scaling changes the architecture during training.',
       ('models.mamba(dynamic depth)',)),
    _t('mamba-custom-attention', 'Mamba',
       'Experiment with different attention mechanisms within the architecture to enhance feature focus and performance.',
       'Try different attention mechanisms inside the Mamba stack.',
       ('models.mamba(hybrid)',)),
    _t('vs-tf-self-attention', 'Mamba vs. Transformers: 1. Core Architecture',
       'Built on self-attention mechanisms to model relationships between all input tokens (e.g., words, image patches).',
       'Transformers relate all tokens with self-attention.',
       ('nn.attention',)),
    _t('vs-tf-fixed', 'Mamba vs. Transformers: 1. Core Architecture',
       'Fixed architecture (predefined layers, heads, dimensions) with positional encoding for sequence awareness.',
       'Transformers have a fixed architecture with positional encoding.',
       ('models.transformer',)),
    _t('vs-tf-global-context', 'Mamba vs. Transformers: 1. Core Architecture',
       'Dominates tasks requiring global context (e.g., machine translation, image classification with ViT).',
       'Transformers dominate global-context tasks.',
       ('models.transformer',)),
    _t('vs-mamba-dynamic', 'Mamba vs. Transformers: 1. Core Architecture',
       'Emphasizes dynamic scaling to adapt model depth/width based on input complexity.',
       "The guide's Mamba adapts depth/width to input complexity.",
       ('models.mamba(dynamic depth)',)),
    _t('vs-mamba-hybrid', 'Mamba vs. Transformers: 1. Core Architecture',
       'Integrates hybrid attention-convolution modules for local-global feature balance.',
       "The guide's Mamba mixes attention and convolution for local-global balance.",
       ('models.mamba(hybrid)',)),
    _t('vs-mamba-efficiency', 'Mamba vs. Transformers: 1. Core Architecture',
       'Designed for resource efficiency (e.g., edge devices, low-memory settings).',
       'Mamba is designed for resource efficiency.',
       ('compare.complexity(cost against length)',)),
    _t('vs-tf-global-attention', 'Mamba vs. Transformers: 2. Attention and Context Handling',
       'Global self-attention: Captures interactions between all tokens, enabling long-range dependencies.',
       'Global self-attention enables long-range dependencies.',
       ('nn.attention', 'data.sequence_tasks')),
    _t('vs-tf-quadratic', 'Mamba vs. Transformers: 2. Attention and Context Handling',
       'Quadratic complexity \\(O(n^2)\\) limits scalability for long sequences (e.g., high-resolution images, genomics).',
       "Attention's O(n^2) cost limits long sequences.",
       ('compare.complexity(cost against length)',)),
    _t('vs-tf-mitigations', 'Mamba vs. Transformers: 2. Attention and Context Handling',
       'Mitigations: Sparse attention (e.g., Longformer), chunking, or memory-efficient variants (FlashAttention).',
       'Sparse attention, chunking and FlashAttention mitigate the quadratic cost.',
       ('nn.efficient_attention',)),
    _t('vs-mamba-adaptive-attention', 'Mamba vs. Transformers: 2. Attention and Context Handling',
       'Uses adaptive attention focused on critical regions (reduces redundant computation).',
       'Adaptive attention on critical regions reduces computation.',
       ('models.mamba(hybrid)',)),
    _t('vs-mamba-hierarchical', 'Mamba vs. Transformers: 2. Attention and Context Handling',
       'Hierarchical processing combines local convolutions with sparse attention for efficiency.',
       'Local convolutions plus sparse attention give efficient hierarchical processing.',
       ('models.mamba',)),
    _t('vs-mamba-long-sequences', 'Mamba vs. Transformers: 2. Attention and Context Handling',
       'Better suited for long sequences with linear or sub-quadratic complexity.',
       'Mamba scales linearly and suits long sequences.',
       ('nn.ssm', 'compare.complexity(cost against length)')),
    _t('vs-tf-cost', 'Mamba vs. Transformers: 3. Computational Efficiency',
       'High memory/FLOPs cost due to dense attention and large parameter counts.',
       'Transformers cost much memory and FLOPs.',
       ('compare.complexity(cost against length)', 'analysis.complexity(params, MACs)')),
    _t('vs-tf-heavy-optimization', 'Mamba vs. Transformers: 3. Computational Efficiency',
       'Requires heavy optimization (mixed precision, model parallelism) for training/inference.',
       'Transformers need mixed precision and model parallelism at scale.',
       ('train(precision)', 'train.distributed')),
    _t('vs-tf-edge', 'Mamba vs. Transformers: 3. Computational Efficiency',
       'Ideal for GPU/TPU clusters but struggles on edge devices.',
       'Transformers suit GPU/TPU clusters and struggle on edge devices.',
       ('analysis.complexity(latency)',)),
    _t('vs-mamba-skip-layers', 'Mamba vs. Transformers: 3. Computational Efficiency',
       'Dynamic scaling reduces redundant computations (e.g., skips layers for simpler inputs).',
       'Dynamic scaling skips layers for simple inputs.',
       ('models.mamba(dynamic depth)',)),
    _t('vs-mamba-on-device', 'Mamba vs. Transformers: 3. Computational Efficiency',
       'Optimized for on-device deployment via parameter pruning and mixed-precision support.',
       'Mamba suits on-device deployment with pruning and mixed precision.',
       ('compress', 'train(precision)')),
    _t('vs-mamba-latency', 'Mamba vs. Transformers: 3. Computational Efficiency',
       'Lower latency in resource-constrained environments (e.g., real-time video processing).',
       'Mamba has lower latency in constrained environments.',
       ('analysis.complexity(latency)',)),
    _t('vs-tf-scale', 'Mamba vs. Transformers: 4. Scalability and Training',
       'Scale exceptionally with data and parameters (e.g., GPT-4, PaLM).',
       'Transformers scale with data and parameters.',
       ('compare.complexity(cost against length)',)),
    _t('vs-tf-pretraining-critical', 'Mamba vs. Transformers: 4. Scalability and Training',
       'Pretraining on massive datasets is critical for downstream performance.',
       'Transformers depend on large-scale pretraining.',
       ('methods.transfer',)),
    _t('vs-tf-stable-training', 'Mamba vs. Transformers: 4. Scalability and Training',
       'Stable training with standardized techniques (warmup, layer normalization).',
       'Warmup and layer normalization make Transformer training stable.',
       ('train.schedules', 'models.transformer')),
    _t('vs-mamba-adaptive-scale', 'Mamba vs. Transformers: 4. Scalability and Training',
       'Scales adaptively, avoiding over-parameterization for simpler tasks.',
       'Mamba scales adaptively and avoids over-parameterization on simple tasks.',
       ('models.mamba',)),
    _t('vs-mamba-less-pretraining', 'Mamba vs. Transformers: 4. Scalability and Training',
       'Pretraining benefits exist but less dependent on extreme dataset sizes.',
       'Mamba benefits from pretraining but needs less data.',
       ('methods.transfer', 'models.mamba')),
    _t('vs-mamba-monitor', 'Mamba vs. Transformers: 4. Scalability and Training',
       'Training dynamics require careful monitoring of scaling behavior.',
       "Mamba's training dynamics need monitoring of scaling behaviour.",
       ('models.mamba',)),
    _t('vs-tf-use-global', 'Mamba vs. Transformers: 5. Use Case Suitability',
       'Global context tasks: Language modeling, cross-modal retrieval (text-to-image).',
       'Transformers excel at global-context tasks (language modeling, retrieval).',
       ('models.transformer',)),
    _t('vs-tf-use-pretraining', 'Mamba vs. Transformers: 5. Use Case Suitability',
       'Large-scale pretraining: Transfer learning to diverse downstream tasks.',
       'Transformers excel at large-scale pretraining and transfer.',
       ('methods.transfer',)),
    _t('vs-tf-use-high-resource', 'Mamba vs. Transformers: 5. Use Case Suitability',
       'High-resource environments: Cloud/TPU-based inference.',
       'Transformers suit high-resource inference.',
       ('analysis.complexity(latency)',)),
    _t('vs-mamba-use-edge', 'Mamba vs. Transformers: 5. Use Case Suitability',
       'Resource-limited applications: Edge devices, mobile/embedded systems.',
       'Mamba suits edge and embedded devices.',
       ('analysis.complexity(latency)',)),
    _t('vs-mamba-use-dynamic', 'Mamba vs. Transformers: 5. Use Case Suitability',
       'Dynamic input complexity: Tasks where input varies in difficulty (e.g., medical imaging with variable lesion sizes).',
       'Mamba suits inputs of varying difficulty.',
       ('models.mamba(dynamic depth)',)),
    _t('vs-mamba-use-realtime', 'Mamba vs. Transformers: 5. Use Case Suitability',
       'Real-time processing: Autonomous systems, low-latency video analysis.',
       'Mamba suits real-time, low-latency processing.',
       ('analysis.complexity(latency)',)),
    _t('choose-tf-global', 'Mamba vs. Transformers: 7. Practical Tips',
       'Your task requires global context (e.g., document summarization).',
       'Choose a Transformer when the task needs global context.',
       ('advisor',)),
    _t('choose-tf-resources', 'Mamba vs. Transformers: 7. Practical Tips',
       'You have abundant computational resources and pretraining data.',
       'Choose a Transformer with abundant compute and pretraining data.',
       ('advisor',)),
    _t('choose-tf-ecosystem', 'Mamba vs. Transformers: 7. Practical Tips',
       'You need a well-supported architecture (e.g., Hugging Face ecosystem).',
       'Choose a Transformer for a well-supported ecosystem.',
       ('advisor',)),
    _t('choose-mamba-latency', 'Mamba vs. Transformers: 7. Practical Tips',
       'Latency/memory constraints are critical (e.g., IoT devices).',
       'Choose Mamba under latency or memory constraints.',
       ('advisor', 'analysis.complexity(latency)')),
    _t('choose-mamba-varied-input', 'Mamba vs. Transformers: 7. Practical Tips',
       'Input complexity varies widely (e.g., multi-scale segmentation).',
       'Choose Mamba when input complexity varies widely.',
       ('advisor',)),
    _t('choose-mamba-small-data', 'Mamba vs. Transformers: 7. Practical Tips',
       'You want to avoid over-parameterization for smaller datasets.',
       'Choose Mamba to avoid over-parameterization on small datasets.',
       ('advisor',)),
)
# fmt: on

_BY_ID = {t.id: t for t in TIPS}


def component_status(component: str) -> str:
    """Whether a component a tip names exists in this version: ``"exists"`` or ``"planned"``.

    A component is ``<dotted name>[(detail)]`` under ``dltricks`` (``"nn.pool(SPP)"``,
    ``"methods.distillation"``), a registered model (``"models.small_cnn"``), or a file of the
    repository (``"benchmarks/mamba_edge.py(measured)"``). It exists when the module (and
    attribute) imports, the model is registered, or the file is there; anything else is
    planned, so the catalog never lists a component that is not there as realising a tip.
    """
    import importlib
    import importlib.util
    from pathlib import Path

    name = re.split(r"[\s(]", component.strip(), maxsplit=1)[0]
    if "/" in name:
        root = Path(__file__).resolve().parents[3]
        return "exists" if (root / name).is_file() else "planned"
    parts = [p for p in name.split(".") if p]
    for i in range(len(parts), 0, -1):
        module = "dltricks." + ".".join(parts[:i])
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin in (None, "namespace"):  # absent, or an empty folder
            continue
        obj: Any = importlib.import_module(module)
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None:
            return "exists"
        break
    if len(parts) == 2 and parts[0] == "models":
        from dltricks.models import list_models

        if parts[1] in list_models() or list_models(f"{parts[1]}*"):
            return "exists"
    return "planned"


def tip_ids() -> list[str]:
    """All tip ids, in guide order."""
    return [t.id for t in TIPS]


def get_tip(tip_id: str) -> Tip:
    """The tip ``tip_id``; an unknown id raises ``ValueError`` listing the valid ones."""
    if tip_id not in _BY_ID:
        raise ValueError(f"Unknown tip {tip_id!r}; valid ids: {', '.join(tip_ids())}.")
    return _BY_ID[tip_id]


def sections() -> list[str]:
    """Section names in guide order."""
    return list(dict.fromkeys(t.section for t in TIPS))


def experiments_for(tip_id: str) -> list[str]:
    """Ids of the registered experiments that measure ``tip_id``."""
    from dltricks.lab.experiment import list_experiments

    return [e.id for e in list_experiments() if tip_id in e.tips]


def catalog_status(checks: Mapping[str, Sequence[str]] | None = None) -> list[dict[str, Any]]:
    """Every tip with its status (measured / analysis / not measured) and what covers it.

    Args:
        checks: computations that check tips without training, ``{name: tip ids}``; by default
            the lab's analyses (:func:`dltricks.lab.analyses.coverage`). The comparison's claims
            sit in a layer above the lab: :func:`dltricks.coverage.catalog_status` passes both.
    """
    from dltricks.lab.experiment import list_experiments

    if checks is None:
        from dltricks.lab.analyses import coverage

        checks = coverage()
    exps = list_experiments()
    rows = []
    for t in TIPS:
        measured = [e.id for e in exps if t.id in e.tips]
        covering = [n for n, tips in checks.items() if t.id in tips]
        status = "measured" if measured else "analysis" if covering else "not measured"
        rows.append({"id": t.id, "section": t.section, "claim": t.claim, "guide": t.guide,
                     "components": list(t.components), "status": status,
                     "experiments": measured, "analyses": covering})
    return rows


__all__ = [
    "TIPS",
    "GuideBullet",
    "Tip",
    "catalog_status",
    "component_status",
    "experiments_for",
    "get_tip",
    "normalize",
    "parse_guide",
    "sections",
    "tip_ids",
]
