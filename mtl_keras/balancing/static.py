"""``static``: Keras' own compile-time ``loss_weights``, nothing more (the default)."""

from mtl_keras.balancing.base import Balancer, register_balancer


@register_balancer
class Static(Balancer):
    """Fixed weights from ``compile(loss_weights=...)``; training stays Keras' own ``train_step``.

    ``compile(balancer="static")`` (or no balancer) attaches nothing to the model.

    Example:
        >>> from mtl_keras.balancing import get_balancer
        >>> get_balancer(Static()) is None
        True
    """

    key = "static"
