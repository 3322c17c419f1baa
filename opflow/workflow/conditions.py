"""`when: EXPR`: a task's condition, parsed with `ast` and evaluated by a whitelist.

    parse_condition("${tasks.count.result.rows} > 0 and ${params.mode} in ['full', 'daily']")

Each `${...}` reference is replaced by a placeholder name before `ast.parse(mode="eval")`,
so what Python parses holds only names opflow made, literals and operators. The
evaluator knows these node types and nothing else: no calls, attributes, subscripts,
comprehensions, lambdas or arithmetic, so an expression can compare values but never
run code. The references are `${params.NAME...}` and `${tasks.ID.result...}`
(templating.py resolves them: checked when the workflow is read, valued when the task
is ready).
"""
from __future__ import annotations

__all__ = ["Condition", "parse_condition", "REFERENCE_NAMESPACES"]

import ast
import operator
import re
from dataclasses import dataclass, field

from opflow.workflow.templating import Scope, TemplateError, resolve_reference

REFERENCE_NAMESPACES = ("params", "tasks")
_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_PLACEHOLDER = "_opflow_ref_{}"
_WORDS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}
#: What a person wrote, for "not allowed" messages (node type -> words).
_WHAT = {ast.Call: "a call", ast.Attribute: "an attribute (.name)", ast.Subscript: "a subscript ([...])",
         ast.BinOp: "arithmetic", ast.Lambda: "a lambda", ast.ListComp: "a comprehension",
         ast.SetComp: "a comprehension", ast.DictComp: "a comprehension", ast.GeneratorExp: "a comprehension",
         ast.IfExp: "an if-expression", ast.Dict: "a mapping", ast.Set: "a set", ast.JoinedStr: "an f-string",
         ast.NamedExpr: "':='", ast.Starred: "'*'", ast.Await: "await", ast.Yield: "yield"}


@dataclass(frozen=True)
class Condition:
    """A checked `when:` expression: its text as written, its tree, its references in order."""

    text: str
    tree: ast.Expression = field(compare=False)  # (made from the text: equal texts, equal trees)
    references: tuple  # the inner text of each ${...}, placeholder i -> references[i]

    def evaluate(self, scope: Scope) -> bool:
        """True or False; raises TemplateError (a reference without a value, values that do not compare)."""
        values = [resolve_reference(inner, scope) for inner in self.references]
        try:
            return bool(_value(self.tree.body, values))
        except TypeError as exc:
            raise TemplateError(f"when: {self.text}: {exc}") from None

    def check(self, scope: Scope) -> list[str]:
        """Problems with its references when the workflow is read (scope.tasks a Deferred)."""
        problems = []
        for inner in self.references:
            try:
                resolve_reference(inner, scope)
            except TemplateError as exc:
                problems.append(str(exc))
        return problems


def parse_condition(text) -> tuple[Condition | None, str | None]:
    """(the condition, None), or (None, what is wrong with it)."""
    if isinstance(text, bool):
        return None, f"'when' must be an expression (a string), got {str(text).lower()}: write 'when: \"true\"' if meant"
    if not isinstance(text, str) or not text.strip():
        return None, f"'when' must be an expression such as \"${{params.mode}} == 'full'\", got {text!r}"[:200]
    references = []

    def placeholder(match):
        inner = match.group(1)
        head = inner.split(".", 1)[0]
        if head not in REFERENCE_NAMESPACES or "." not in inner:
            raise _Refused(f"'${{{inner}}}' cannot be used in 'when' (it may name ${{params.NAME}} and "
                           f"${{tasks.ID.result...}})")
        references.append(inner)
        return _PLACEHOLDER.format(len(references) - 1)

    try:
        if _PLACEHOLDER.format("") in text:
            raise _Refused(f"the name '{_PLACEHOLDER.format('')}...' is opflow's own")
        source = _REFERENCE.sub(placeholder, text)
        tree = ast.parse(source.strip(), mode="eval")
        _allowed(tree.body, len(references))
    except _Refused as exc:
        return None, f"when: {text}: {exc}"
    except SyntaxError as exc:
        return None, f"when: {text}: not an expression ({exc.msg})"
    return Condition(text, tree, tuple(references)), None


class _Refused(Exception):
    pass


def _allowed(node, count: int) -> None:
    """Refuse any node the evaluator does not know, naming it."""
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _allowed(value, count)
    elif isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            _allowed(node.operand, count)
        elif isinstance(node.op, (ast.USub, ast.UAdd)) and isinstance(node.operand, ast.Constant) and \
                type(node.operand.value) in (int, float):
            pass  # a negative number
        else:
            raise _Refused("only 'not' and a number's sign are allowed as unary operators")
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise _Refused(f"'{'is' if isinstance(op, ast.Is) else 'is not'}' is not allowed (use == or !=)")
        for value in [node.left, *node.comparators]:
            _allowed(value, count)
    elif isinstance(node, (ast.List, ast.Tuple)):
        for item in node.elts:
            _allowed(item, count)
    elif isinstance(node, ast.Constant):
        if type(node.value) not in (str, int, float, bool, type(None)):
            raise _Refused(f"the literal {node.value!r} is not allowed")
    elif isinstance(node, ast.Name):
        if node.id not in _WORDS and not _is_placeholder(node.id, count):
            raise _Refused(f"the name '{node.id}' is not allowed: write a reference (${{params.{node.id}}}), "
                           f"a quoted string ('{node.id}'), a number, true, false or null")
    else:
        what = _WHAT.get(type(node), type(node).__name__)
        raise _Refused(f"{what} is not allowed (only references, literals, comparisons, and/or/not, parentheses)")


def _is_placeholder(name: str, count: int) -> bool:
    prefix = _PLACEHOLDER.format("")
    return name.startswith(prefix) and name[len(prefix):].isdigit() and int(name[len(prefix):]) < count


def _value(node, values: list):
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_value(v, values) for v in node.values)
        return any(_value(v, values) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return not _value(node.operand, values)
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.Compare):
        left = _value(node.left, values)
        for op, right_node in zip(node.ops, node.comparators):
            right = _value(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(item, values) for item in node.elts]
    if isinstance(node, ast.Constant):
        return node.value
    if node.id in _WORDS:
        return _WORDS[node.id]
    return values[int(node.id[len(_PLACEHOLDER.format("")):])]
