"""Task balancers, one file each (the registry below): loss-level rules and gradient-level ``GramianBalancer`` rules.

``model.compile(balancer=NAME)`` (or an instance with options) picks one; ``static`` (the default)
is Keras' own compile-time ``loss_weights`` and Keras' own ``train_step``. Adding a balancer means
adding a file with a ``Balancer`` subclass decorated by ``register_balancer``, imported here.

Example:
    >>> from mtl_keras.balancing import BALANCERS
    >>> sorted(BALANCERS)
    ['aligned_mtl', 'cagrad', 'db_mtl', 'dwa', 'fairgrad', 'famo', 'gls', 'gradnorm', 'gradvac', 'imtl', 'mgda', 'nash_mtl', 'pcgrad', 'rlw', 'static', 'uncertainty', 'upgrad']
"""

from mtl_keras.balancing.aligned_mtl import AlignedMTL, aligned_mtl_matrix, aligned_mtl_weights
from mtl_keras.balancing.base import BALANCERS, Balancer, get_balancer, register_balancer
from mtl_keras.balancing.cagrad import CAGrad, cagrad_coefficients
from mtl_keras.balancing.callback import BalancerLogger
from mtl_keras.balancing.db_mtl import DBMTL, db_mtl_weights
from mtl_keras.balancing.dwa import DWA, dwa_weights
from mtl_keras.balancing.fairgrad import FairGrad, fairgrad_weights
from mtl_keras.balancing.famo import FAMO
from mtl_keras.balancing.gls import GLS
from mtl_keras.balancing.gradnorm import GradNorm, gradnorm_targets, last_shared_kernel
from mtl_keras.balancing.gradvac import GradVac, gradvac_coefficients
from mtl_keras.balancing.imtl import IMTL, imtl_weights
from mtl_keras.balancing.mgda import MGDA, mgda_weights
from mtl_keras.balancing.nash_mtl import NashMTL, nash_mtl_weights
from mtl_keras.balancing.pcgrad import PCGrad, pcgrad_coefficients
from mtl_keras.balancing.rlw import RLW
from mtl_keras.balancing.static import Static
from mtl_keras.balancing.uncertainty import Uncertainty
from mtl_keras.balancing.upgrad import UPGrad, upgrad_coefficients

__all__ = [
    "CAGrad",
    "FairGrad",
    "MGDA",
    "NashMTL",
    "UPGrad",
    "cagrad_coefficients",
    "fairgrad_weights",
    "mgda_weights",
    "nash_mtl_weights",
    "upgrad_coefficients",
    "AlignedMTL",
    "DBMTL",
    "GradVac",
    "IMTL",
    "aligned_mtl_matrix",
    "aligned_mtl_weights",
    "db_mtl_weights",
    "gradvac_coefficients",
    "imtl_weights",
    "BALANCERS",
    "DWA",
    "FAMO",
    "GLS",
    "Balancer",
    "BalancerLogger",
    "GradNorm",
    "PCGrad",
    "RLW",
    "Static",
    "Uncertainty",
    "dwa_weights",
    "get_balancer",
    "gradnorm_targets",
    "last_shared_kernel",
    "pcgrad_coefficients",
    "register_balancer",
]
