def is_torch_fx_available():
    return False
