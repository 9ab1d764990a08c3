"""meterline's language-server sidecar (``meterline lsp``).

Editors start it over stdio next to their other language servers. It meters inline
completions it answers itself (LSP 3.18 ``textDocument/inlineCompletion``) and the calls
other integrations report (``meterline/recordCall``), follows what happens to accepted
code (retention), and shows the budget in the editor. See docs/lsp.md.

Nothing is imported here: ``meterline --help`` loads ``lsp.cli``, which must stay light.
"""
