from uqbench.cli import main

main()
