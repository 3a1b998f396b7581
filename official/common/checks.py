"""Config checks shared by every layer (attacks, reweighting, core, tools)."""


def check_choice(key, value, valid):
  """One-line error for a config value outside its choices (keys spelt in full)."""
  if value not in valid:
    raise ValueError(f"unknown {key} '{value}'; valid: {', '.join(valid)}")
  return value
