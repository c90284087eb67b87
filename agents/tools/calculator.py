"""`calculator`: arithmetic the model should not do in its head.

The expression is parsed with Python's own parser into a syntax tree and only numbers, the
operators + - * / // % ** and parentheses are evaluated; anything else (names, calls,
attributes, strings, ...) is refused, so no user input is ever executed. Sizes are capped so that
no expression can exhaust the worker: its length, every intermediate result's magnitude (powers
are checked before they are computed)."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from rest_framework import serializers

from agents.backends.base import validated_config
from agents.tools.base import ToolContext, ToolError, function_definition, tool_name_field

MAX_EXPRESSION_LENGTH = 500
# Results beyond this magnitude are refused, integers and floats alike (floats overflow at ~1.8e308).
MAX_MAGNITUDE = 10**300
_MAX_LOG10 = 300

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}

DESCRIPTION = (
    "Evaluate an arithmetic expression exactly. Supports numbers, parentheses and the operators "
    "+ - * / // (floor division) % (remainder, not percent) and ** (power). Write percentages "
    "as multiplication (17.5% of 2380 is 0.175 * 2380) and numbers without thousands separators."
)
PARAMETERS = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": "The expression, for example (12.5 + 7) * 3 / 4",
            "maxLength": MAX_EXPRESSION_LENGTH,
        }
    },
    "required": ["expression"],
    "additionalProperties": False,
}


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression, or ToolError saying why there is none."""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ToolError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError):
        raise ToolError("the expression is not valid arithmetic") from None
    except (RecursionError, MemoryError):
        raise ToolError("the expression is nested too deeply") from None
    try:
        return _evaluate(tree.body)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except (OverflowError, MemoryError):
        raise ToolError("the result is too large") from None
    except RecursionError:
        raise ToolError("the expression is nested too deeply") from None


def format_number(value: int | float) -> str:
    """Integers as they are, floats to 12 significant digits, without a trailing .0."""
    if isinstance(value, int):
        return str(value)
    text = format(value, ".12g")
    return "0" if text == "-0" else text


def _evaluate(node: ast.expr) -> int | float:
    if isinstance(node, ast.Constant):
        # bool is an int subclass: True is not a number here.
        if type(node.value) not in (int, float):
            raise ToolError("only numbers and the operators + - * / // % ** are allowed")
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
        raise ToolError("^ is not a power here: write ** (2 ** 10)")
    if isinstance(node, ast.Tuple):
        raise ToolError("commas are not allowed: write 2380, not 2,380")
    raise ToolError("only numbers and the operators + - * / // % ** are allowed")


def _power(base: int | float, exponent: int | float) -> int | float:
    # Estimate the result's size before computing it: 9 ** 9 ** 9 must not even start.
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > _MAX_LOG10:
        raise ToolError("the result is too large")
    if base == 0 and exponent < 0:
        raise ZeroDivisionError
    result = base**exponent
    if isinstance(result, complex):
        raise ToolError("the result is not a real number")
    return result


def _checked(value: int | float) -> int | float:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise ToolError("the result is too large")
    if abs(value) > MAX_MAGNITUDE:
        raise ToolError("the result is too large")
    return value


class CalculatorTool:
    def __init__(self, name: str) -> None:
        self.name = name

    def definition(self) -> dict[str, Any]:
        return function_definition(self.name, DESCRIPTION, PARAMETERS)

    def run(self, arguments: dict[str, Any], context: ToolContext) -> str:
        return format_number(evaluate(arguments["expression"]))


class CalculatorSettings(serializers.Serializer):
    name = tool_name_field(required=False)


class Calculator:
    default_name = "calculator"

    def validate_config(self, settings: dict[str, Any], *, previous: dict[str, Any] | None) -> dict[str, Any]:
        return validated_config(CalculatorSettings, settings)

    def public_config(self, settings: dict[str, Any]) -> dict[str, Any]:
        return dict(settings)

    def build(self, settings: dict[str, Any]) -> CalculatorTool:
        return CalculatorTool(settings.get("name", self.default_name))
