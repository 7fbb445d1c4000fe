"""ResNet-50 v1.5 as a plugin of the zoo, published by its own distribution (modelzoo-resnet).

It uses only the public plugin contract (`registry.spec`) and `registry.data`'s public pieces; it
knows nothing about running: `zoo-run` trains, evaluates, benchmarks and exports it through
`modelzoo_resnet.models.RESNET50_V1_5`.
"""
