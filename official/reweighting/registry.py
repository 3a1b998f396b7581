"""Reweighting methods by name. Adding a method: one module, one entry here."""
from official.reweighting import arow
from official.reweighting import at_bsl
from official.reweighting import base
from official.reweighting import cfa
from official.reweighting import class_weights
from official.reweighting import done
from official.reweighting import frl
from official.reweighting import gairat
from official.reweighting import iaat
from official.reweighting import lrat
from official.reweighting import mail
from official.reweighting import robal
from official.reweighting import srat
from official.reweighting import wat
from official.reweighting import weat

METHODS = {
    "none": base.Method,
    "class_balanced": class_weights.ClassBalanced,
    "srat": srat.SRAT,
    "iaat": iaat.IAAT,
    "done": done.DONE,
    "gairat": gairat.GAIRAT,
    "mail": mail.MAIL,
    "lrat": lrat.LRAT,
    "arow": arow.ARoW,
    "weat": weat.WEAT,
    "robal": robal.RoBal,
    "at_bsl": at_bsl.ATBSL,
    "frl": frl.FRL,
    "wat": wat.WAT,
    "cfa": cfa.CFA,
}


def build_method(cfg, *, config, data):
  """cfg: config.reweighting (its `name` picks the method)."""
  name = check_name(cfg.name)
  return METHODS[name](cfg, config=config, data=data)


def check_name(name):
  return base.check_choice("reweighting.name", name, sorted(METHODS))
