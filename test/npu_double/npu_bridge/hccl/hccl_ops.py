"""npu_bridge.hccl.hccl_ops.broadcast: one process here, so rank 0's values are the tensors themselves."""
import tensorflow as tf

from npu_bridge.estimator.npu import record


def broadcast(tensor, root_rank, fusion=2, fusion_id=0, group="hccl_world_group"):
    record("broadcast", tensors=len(tensor), root_rank=root_rank)
    return [tf.identity(t) for t in tensor]
