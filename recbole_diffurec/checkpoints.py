"""Load a checkpoint saved by a run for inference-only tools (``benchmarks/sampling_steps.py``,
``benchmarks/pathway.py``): the config it was trained with, the model with its weights, and the
data split it was evaluated on. Keys an older checkpoint lacks are filled when its config is
unpickled (``Config.__setstate__``)."""


def load_for_inference(path, device=None):
    """(config, model in eval mode, train_data, valid_data, test_data) of the checkpoint ``path``."""
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_diffurec.utils import get_model

    # RecBole's checkpoint: a pickled Config (ours fills the keys an older checkpoint lacks)
    checkpoint = torch.load(path, weights_only=False, map_location="cpu")
    config = checkpoint["config"]
    if device is not None:
        config.final_config_dict["device"] = torch.device(device)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, test._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return config, model, train, valid, test
