"""Configuration of a run: typed sections (`schema`), construction by flat names (`build`), the named
presets (`presets`) and the checks that need the environment (`validate`).

This package file imports nothing: agents import `jaxdqn.config.schema`, while `build`, `presets` and
`validate` import the agents registry.
"""
