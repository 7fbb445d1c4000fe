"""The eval-mode network as exports build it: the plugin's export hparams, the named output heads, the checkpoint
restored, and frozen (variables folded into constants). Shared by the TensorFlow, ONNX and OpenVINO exports and by
`zoo-run perf`; TensorFlow is imported when a graph is built, so importing this module stays cheap."""
import collections

from registry import spec

INPUT_NODE = "input"
OUTPUT_NODES = ("logits", "probabilities", "classes")


def export_hparams(model, hparams, target):
    """The hparams to build an exported graph for `target` ("tensorflow" or "onnx") with: the plugin's
    `export_hparams(hparams, target)` when it publishes one, else `hparams` (a copy)."""
    hook = getattr(model, "export_hparams", None)
    return dict(hook(hparams, target) if callable(hook) else hparams)


def changed_hparams(hparams, built):
    """{key: value} of `built` that differ from `hparams` (what an export changed, for its info file)."""
    return collections.OrderedDict((k, v) for k, v in sorted(built.items()) if hparams.get(k) != v)


def heads(logits):
    """The exported outputs of float `logits` [N, K]: (`logits` float32 [N, K], `probabilities` float32 [N, K],
    `classes` int32 [N]), named OUTPUT_NODES."""
    import tensorflow as tf
    logits = tf.cast(logits, tf.float32)
    return (tf.identity(logits, name="logits"), tf.nn.softmax(logits, name="probabilities"),
            tf.argmax(logits, axis=1, output_type=tf.int32, name="classes"))


def restore(sess, checkpoint):
    """Restores every global variable of the session's graph from `checkpoint` (a prefix)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    tf1.train.Saver(var_list=tf1.global_variables()).restore(sess, checkpoint)


def frozen_graph_def(model, hparams, checkpoint=None, batch_size=None):
    """GraphDef of the eval-mode network with its variables folded into constants: `input` float32
    [batch_size, S, S, 3] (None: any batch) -> `logits`, `probabilities` float32 [N, K], `classes` int32 [N].
    `checkpoint` None: freshly initialised weights (speed measurements)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    size = int(hparams["image_size"])
    with tf.Graph().as_default() as graph:
        images = tf1.placeholder(tf.float32, [batch_size, size, size, 3], name=INPUT_NODE)
        heads(spec.build_logits(model, images, False, hparams))
        with tf1.Session() as sess:
            if checkpoint is None:
                sess.run(tf1.global_variables_initializer())
            else:
                restore(sess, checkpoint)
            return tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), list(OUTPUT_NODES))


def checkpoint_logits(model, hparams, checkpoint, images):
    """float32 [N, K] logits of the checkpoint restored into the eval-mode network, on float32 `images`
    [N, S, S, 3] (preprocessed)."""
    import tensorflow as tf
    tf1 = tf.compat.v1
    with tf.Graph().as_default():
        inputs = tf1.placeholder(tf.float32, [None] + list(images.shape[1:]))
        logits, _, _ = heads(spec.build_logits(model, inputs, False, hparams))
        with tf1.Session() as sess:
            restore(sess, checkpoint)
            return sess.run(logits, {inputs: images})
