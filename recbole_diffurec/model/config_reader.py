"""Strict config reading for our models: a key missing from the YAMLs is an error, not None."""


def read_config(config, keys, model_name):
    """{key: config[key]} for ``keys``; KeyError naming the YAML to fix if one is missing."""
    missing = [k for k in keys if k not in config]
    if missing:
        raise KeyError(
            f"{model_name} needs config key(s) {', '.join(missing)}: add them to "
            f"properties/model/{model_name}.yaml (each with a comment) or pass --key=value."
        )
    return {k: config[k] for k in keys}
