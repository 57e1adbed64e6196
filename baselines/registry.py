"""The registry of every method the runner can build, ELDER included.

Adding a method is its module, its entry here and its ``conf/method/<name>.yaml``, whose
``defaults`` name the schema ``<name>_schema`` that :mod:`experiments.schema` stores.
"""

from baselines.alphaedit import AlphaEdit
from baselines.defer import Defer
from baselines.ft_l import FTL
from baselines.grace import GRACE
from baselines.lemoe import LEMoE
from baselines.lora import LoRA
from baselines.melo import MELO
from baselines.rome import ROME
from baselines.serac import SERAC
from baselines.t_patcher import TPatcher
from baselines.wilke import WilKE
from baselines.wise import WISE
from elder import ELDER
from elder.editor import Editor

EDITORS: dict[str, type[Editor]] = {
    cls.name: cls
    for cls in (
        ELDER,
        AlphaEdit,
        Defer,
        FTL,
        GRACE,
        LEMoE,
        LoRA,
        MELO,
        ROME,
        SERAC,
        TPatcher,
        WilKE,
        WISE,
    )
}
