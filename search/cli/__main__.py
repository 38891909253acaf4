from budgetnas.search.cli.app import main

main()
