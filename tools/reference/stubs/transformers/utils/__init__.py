import logging as _logging


def _identity_decorator(*_, **__):
    return lambda f: f


add_start_docstrings = add_start_docstrings_to_model_forward = replace_return_docstrings = _identity_decorator


def is_flash_attn_2_available():
    return False


def is_flash_attn_greater_or_equal_2_10():
    return False


class _Logging:
    @staticmethod
    def get_logger(name):
        logger = _logging.getLogger(name)
        logger.warning_once = logger.warning
        return logger


logging = _Logging()
