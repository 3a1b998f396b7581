"""Reweighting methods by name. Adding a method: one module, one entry here."""
from official.reweighting import base

METHODS = {
    "none": base.Method,
}


def build_method(cfg, *, config, data):
  """cfg: config.reweighting (its `name` picks the method)."""
  name = cfg.name
  if name not in METHODS:
    raise ValueError(f"unknown reweighting.name '{name}'; valid: "
                     f"{', '.join(sorted(METHODS))}")
  return METHODS[name](cfg, config=config, data=data)
