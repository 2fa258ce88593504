from losslab.cli import main

main()
