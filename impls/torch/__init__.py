"""The PyTorch backend: spec layers as torch.nn modules, trained eagerly or with torch.compile."""
