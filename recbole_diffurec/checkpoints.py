"""Load a checkpoint saved by a run for inference-only tools (``benchmarks/sampling_steps.py``,
``benchmarks/pathway.py``): the config it was trained with, the model with its weights, and the
data split it was evaluated on."""

# Keys added after checkpoints were first saved, with the behaviour those checkpoints had.
# (The item init and the decay do not matter once trained weights are loaded.)
BEHAVED_AS = {
    "sampling_steps": 0,
    "inference_batch_size": 512,
    "autocast_bf16": False,
    "item_init_std": 1.0,
    "pathway_weight_decay": True,
    "chain_blocks": True,
}


def load_for_inference(path, device=None):
    """(config, model in eval mode, train_data, valid_data, test_data) of the checkpoint ``path``."""
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_diffurec.utils import get_model

    checkpoint = torch.load(path, weights_only=False, map_location="cpu")  # RecBole's: a pickled Config
    config = checkpoint["config"]
    for key, value in BEHAVED_AS.items():
        config.final_config_dict.setdefault(key, value)
    if device is not None:
        config.final_config_dict["device"] = torch.device(device)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    model = get_model(config["model"])(config, test._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return config, model, train, valid, test
