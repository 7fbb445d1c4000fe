import json
import os


def record(name, **kwargs):
    """Appends {"name": name, **kwargs} to $NPU_DOUBLE_LOG (values made JSON-safe)."""
    path = os.environ.get("NPU_DOUBLE_LOG")
    if path:
        safe = {k: v if isinstance(v, (str, int, float, bool, type(None))) else type(v).__name__
                for k, v in kwargs.items()}
        with open(path, "a") as f:
            f.write(json.dumps(dict(safe, name=name)) + "\n")
