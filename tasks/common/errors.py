"""Bad input, data or config: the errors the entry points print as one line naming the fix, and the checks that
raise them."""
import math
import sys


class UserError(RuntimeError):
    """Bad input, data or config: the entry point prints the message (which names the fix), no traceback."""


class NonFiniteLoss(UserError):
    pass


def check_config(cfg, checks):
    """checks: (key, ok, what was expected). The first failure raises naming the key, its value and the fix."""
    from omegaconf import OmegaConf
    for key, ok, want in checks:
        if not ok:
            raise ValueError(f"bad config value {key}={OmegaConf.select(cfg, key)!r}: expected {want}")


def check_finite(loss, where):
    if not math.isfinite(loss):
        raise NonFiniteLoss(f"loss became {loss} at {where}; stopping. The last good checkpoint is kept: "
                            f"lower the learning rate or clip harder, then resume=true")


def exit_on_user_error(fn, *args):
    """Run a task's entry function; a user error or bad config value exits non-zero with one clear line."""
    try:
        return fn(*args)
    except (ValueError, UserError) as e:
        sys.exit(f"error: {e}")
