"""`CellConfigNode`: the ConfigStore entry of `cell=<name>`, its node made from the cell's constructor only when
Hydra loads it.

Hydra's ConfigStore holds one entry per config; when it composes with `cell=res_rnn` it reads the `.node` of a
copy of that entry alone. Made there, a plugin cell's node (and so the import of its module) costs nothing to a
run that chose another cell, and the node always follows the cell registered now (rrn_app.config.cell_node).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigNode
from omegaconf import OmegaConf


class CellConfigNode(ConfigNode):
    """The entry `cell/<cell>.yaml` of Hydra's ConfigStore; `node` is `cell_node(cell)`, made when read."""

    def __init__(self, cell: str):
        self.cell, self._node = cell, None
        super().__init__(name=f"{cell}.yaml", node=None, group="cell", package=None, provider="rrn_app")

    @property
    def node(self):
        if self._node is None:
            from rrn_app.config import cell_node

            self._node = OmegaConf.create(cell_node(self.cell))
        return self._node

    @node.setter
    def node(self, value):
        self._node = value
