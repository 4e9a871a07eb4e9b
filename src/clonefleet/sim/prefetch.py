"""A hint to the processor: start loading an array element's cache line now, use it later.

The engines' cache lookups and the LRU's evictions read one element of a table of
hundreds of MiB at a place known some events ahead (an IO's key when it is placed,
two stages before its lookup; the ring's next records before they are evicted): asked
for early, the memory's latency passes while other events run. A prefetch changes
nothing a program computes, and never faults (an address past the array is a wasted
hint), so it cannot change a result: the engines' equality tests hold it so. The
intrinsic's name (``llvm.prefetch.p0``) is LLVM's for opaque pointers (LLVM 15 on; numba
0.68's llvmlite 0.50 is LLVM 20): pyproject.toml asks for that numba at least.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """``prefetch(a, i)``: load the line of ``a[i]`` into every cache level, for a read (LLVM's
    llvm.prefetch; a no-op where the processor has none)."""
    if not isinstance(array, types.Array) or not isinstance(index, types.Integer):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        array_type = signature.args[0]
        data = context.make_array(array_type)(context, builder, args[0])
        at = context.cast(builder, args[1], signature.args[1], types.intp)
        pointer = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, array_type, data, [at], wraparound=False, boundscheck=False)
        i32, byte_pointer = ir.IntType(32), ir.IntType(8).as_pointer()  # one declaration for every element type
        hint = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(hint, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])  # read, all levels, data
        return context.get_dummy_value()

    return types.void(array, index), codegen


#: ``prefetch(array, index)`` in compiled code (the intrinsic, typed for its callers).
prefetch: Callable[[Any, int], None] = _prefetch  # type: ignore[assignment]  # numba types the call
