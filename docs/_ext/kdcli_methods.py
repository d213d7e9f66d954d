"""A Sphinx directive that tabulates a distillation method's parameters from its dataclass, at build time.

    .. kdcli-method-keys:: dkd

gives the keys of `--method dkd:key=value,...` (the dataclass's fields), their
defaults and what each means (the field's `help`), so the methods page never
copies a default by hand.
"""

import dataclasses
from pathlib import Path


def shown(value):
    """A default as `--method` spells it: `true`, `4`, `0.9`, `auto`."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def rows(name):
    """`(key, default, meaning)` of each parameter of the method registered as `name`."""
    from kdcli.methods import method_class

    return [(f.name, shown(f.default), f.metadata.get("help", "")) for f in dataclasses.fields(method_class(name))]


def setup(app):
    from docutils import nodes
    from sphinx.util.docutils import SphinxDirective

    class MethodKeys(SphinxDirective):
        required_arguments = 1

        def run(self):
            import kdcli.methods

            for path in sorted(Path(kdcli.methods.__file__).parent.rglob("*.py")):  # edited fields rebuild the page
                self.env.note_dependency(str(path))
            table = nodes.table(classes=["kdcli-method-keys"])
            group = nodes.tgroup(cols=3)
            table += group
            group.extend(nodes.colspec(colwidth=width) for width in (20, 10, 50))

            def row(cells, literal):
                entry_row = nodes.row()
                for i, text in enumerate(cells):
                    entry = nodes.entry()
                    paragraph = nodes.paragraph()
                    paragraph += nodes.literal(text=text) if literal and i < 2 else nodes.Text(text)
                    entry += paragraph
                    entry_row += entry
                return entry_row

            head = nodes.thead()
            head += row(("key", "default", "meaning"), literal=False)
            body = nodes.tbody()
            body.extend(row(cells, literal=True) for cells in rows(self.arguments[0]))
            group += head
            group += body
            return [table]

    app.add_directive("kdcli-method-keys", MethodKeys)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
