import logging as _logging


def get_logger(name):
    logger = _logging.getLogger(name)
    logger.warning_once = logger.warning
    return logger
