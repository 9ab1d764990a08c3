from lsp.cli import main

main()
