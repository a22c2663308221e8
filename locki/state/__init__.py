"""Desired state and configuration: the pydantic models and the TOML files behind them."""
