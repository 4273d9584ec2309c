"""The encode pipeline: plan a dataset, decode/transform, encode, write — locally (threads) or on Ray."""

from wfvae_cli.pipeline.encode import EncodeSummary, encode_dataset, store_meta
from wfvae_cli.pipeline.options import EncodeOptions
from wfvae_cli.pipeline.planning import DatasetPlan, plan_dataset

__all__ = ["DatasetPlan", "EncodeOptions", "EncodeSummary", "encode_dataset", "plan_dataset", "store_meta"]
