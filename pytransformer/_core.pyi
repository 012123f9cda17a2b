"""Type stubs for the compiled module pytransformer._core (the C++ side; the public
API is pytransformer.Transformer / EncoderModel / ops, which validate arguments
before calling these)."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt

from . import ops as ops  # the submodule pytransformer._core.ops has the same functions

IdArray = npt.NDArray[np.int32]
FloatArray = npt.NDArray[np.float32]
# One hypothesis: (tokens, score, log_prob)
Hypothesis = Tuple[List[int], float, float]

def _runtime_info() -> Dict[str, Any]: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def _isa_request_warning() -> str: ...
def _set_isa(isa: str) -> None: ...
def _weight_table(config: Dict[str, Any], encoder_only: bool = False) -> Dict[str, Tuple[int, ...]]: ...

class GenerationOptions:
    """Every option of one generate/stream call (no defaults here: they live in
    pytransformer.Transformer.generate); read-only attributes of the same names."""
    def __init__(self, *, max_length: int, min_length: int, beam_size: int, length_penalty: float,
                 num_hypotheses: int, sampling_topk: int, sampling_topp: float, sampling_temperature: float,
                 seed: int, return_scores: bool, suppress_tokens: List[int], forced_eos: bool,
                 forced_bos: Optional[int], early_stopping: bool) -> None: ...
    max_length: int
    min_length: int
    beam_size: int
    length_penalty: float
    num_hypotheses: int
    sampling_topk: int
    sampling_topp: float
    sampling_temperature: float
    seed: int
    return_scores: bool
    suppress_tokens: List[int]
    forced_eos: bool
    forced_bos: Optional[int]
    early_stopping: bool

class TokenStream:
    def next(self) -> int: ...  # -1 once the stream is finished

class EncoderOnlyModel:
    def __init__(self, config: Dict[str, Any], weights: Dict[str, FloatArray]) -> None: ...
    def encode(self, input_ids: IdArray, lengths: Optional[IdArray] = None,
               token_type_ids: Optional[IdArray] = None) -> FloatArray: ...
    def state_dict(self) -> Dict[str, FloatArray]: ...

class TransformerModel:
    def __init__(self, config: Dict[str, Any], weights: Dict[str, FloatArray]) -> None: ...
    def state_dict(self) -> Dict[str, FloatArray]: ...
    def generate(self, src_ids: IdArray, src_lengths: Optional[IdArray], start_tokens: Optional[List[List[int]]],
                 options: GenerationOptions) -> List[List[Hypothesis]]: ...
    def stream(self, src_ids: IdArray, start_tokens: Optional[List[List[int]]],
               options: GenerationOptions) -> TokenStream: ...
    def encode(self, src_ids: IdArray, src_lengths: Optional[IdArray] = None) -> FloatArray: ...
    def decode(self, tgt_ids: IdArray, memory: FloatArray, src_lengths: Optional[IdArray] = None,
               return_attention: bool = False) -> Any: ...
