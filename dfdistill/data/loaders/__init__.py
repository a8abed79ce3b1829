"""One module per dataset family; each registers its loaders with `@register_dataset("name")`.

Every module here is imported by `dfdistill.data.registry` on first lookup, so adding a dataset is
a module in this package plus `conf/dataset/<name>.yaml` -- nothing else is edited.
"""
