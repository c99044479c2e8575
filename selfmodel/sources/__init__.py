"""Source adapters by format name (the `format` of a source in selfmodel.yaml)."""

from selfmodel.sources.base import Adapter
from selfmodel.sources.chat import ChatAdapter
from selfmodel.sources.convai2 import ConvAI2Adapter
from selfmodel.sources.csv_files import CsvAdapter
from selfmodel.sources.jsonl import JsonlAdapter
from selfmodel.sources.parquet import ParquetAdapter
from selfmodel.sources.stackexchange import StackExchangeAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "jsonl": JsonlAdapter,
    "csv": CsvAdapter,
    "parquet": ParquetAdapter,
    "stackexchange": StackExchangeAdapter,
    "convai2": ConvAI2Adapter,
    "chat": ChatAdapter,
}
