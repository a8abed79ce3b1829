"""Method name -> config schema (for ConfigStore); the classes themselves come from `_target_`."""

from __future__ import annotations


def method_config_classes() -> dict[str, type]:
    from dfdistill.methods.coreset import CoresetConfig
    from dfdistill.methods.dc import DCConfig
    from dfdistill.methods.dm import DMConfig

    schemas: dict[str, type] = {"coreset": CoresetConfig, "dc": DCConfig, "dm": DMConfig}
    for modname, names in _OPTIONAL.items():
        try:
            mod = __import__(f"dfdistill.methods.{modname}", fromlist=["x"])
        except ImportError:
            continue
        for name, clsname in names.items():
            schemas[name] = getattr(mod, clsname)
    return schemas


# Methods added by later modules register here: module -> {schema name: config class name}.
_OPTIONAL: dict[str, dict[str, str]] = {}
_OPTIONAL["dfcolearn"] = {"dfcolearn": "DFCoLearnConfig"}
_OPTIONAL["edd"] = {"edd": "EDDConfig"}
_OPTIONAL["mtt"] = {"mtt": "MTTConfig"}
_OPTIONAL["tesla"] = {"tesla": "TESLAConfig"}
_OPTIONAL["idc"] = {"idc": "IDCConfig"}
_OPTIONAL["idm"] = {"idm": "IDMConfig"}
_OPTIONAL["rfad"] = {"rfad": "RFADConfig"}
