from dltricks.cli.main import main

main()
