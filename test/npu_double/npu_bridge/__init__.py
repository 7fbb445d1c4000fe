"""Test double of npu_bridge (see test/npu_double/README.md)."""
