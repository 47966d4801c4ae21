"""The payroll-journal domain: models, XML parsing, correction split, mapping, checks, payloads.

No Prefect in here: everything is a plain function over pydantic models and pandas frames, so it is
tested fast and reused by the flows, the CLI and the benchmarks.
"""
