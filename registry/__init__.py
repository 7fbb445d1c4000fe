"""The generic zoo: plugin contract, discovery, hparams, data, engine and the `zoo-run` CLI.

It knows nothing about any particular network; networks arrive as plugins through the
`modelzoo.models` entry-point group (see `registry.spec`).
"""
