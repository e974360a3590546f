"""nbgrader preprocessor that makes feedback safe to hand back.

nbgrader's feedback HTML shows every cell of the autograded notebook: the
source of hidden tests, and tracebacks whose context lines quote hidden code
and whose file names are the grading server's paths. `CleanFeedback` removes
the hidden-test regions and reduces every error to its type and message: the
checks' messages already say what failed, with the inputs and a hint.
"""

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

HIDDEN_NOTE = "# (hidden tests: their code is not shown; the result is below)"


class CleanFeedback(NbGraderPreprocessor):
    """Strip hidden tests and tracebacks from autograded notebooks."""

    begin = Unicode("### BEGIN HIDDEN TESTS").tag(config=True)
    end = Unicode("### END HIDDEN TESTS").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self.begin in cell.source:
            kept, hidden = [], False
            for line in cell.source.split("\n"):
                if self.begin in line:
                    hidden = True
                    kept.append(HIDDEN_NOTE)
                elif self.end in line:
                    hidden = False
                elif not hidden:
                    kept.append(line)
            cell.source = "\n".join(kept)
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                output.traceback = [f"{output.ename}: {output.evalue}"]
        return cell, resources
