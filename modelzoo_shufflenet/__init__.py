"""ShuffleNetV1 as a plugin of the zoo: the network, its preprocessing, recipe and level metadata.

It knows nothing about running; `zoo-run` (the `registry` package) trains, evaluates and
benchmarks it through the objects in `modelzoo_shufflenet.models`.
"""
