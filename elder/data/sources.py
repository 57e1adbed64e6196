"""Where each data file comes from: a public URL, and the sha256 of the copy our results used.

A file that is neither under ``$ELDER_DATA_DIR`` nor in the user cache is downloaded from here
(:mod:`elder.data.fetch`) and must match its hash byte for byte. Every URL below was
checked byte for byte against the copy in ``../shared/data`` on 2026-12-01 (``evidence``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """A direct-download URL, the file's pinned sha256, and how the URL was checked."""

    url: str
    sha256: str
    evidence: str = ""


# Gu et al. 2024 ("Model editing can hurt general abilities"): their repository removed its
# data from the default branch on 2024-01-23; this commit, an ancestor of main, still has it.
GU = "https://raw.githubusercontent.com/JasonForJoy/Model-Editing-Hurt/b1504a8e5f76b51f30fa49ba3eb8eeace69f8edd"  # noqa: E501
GU_EVIDENCE = "byte-identical at JasonForJoy/Model-Editing-Hurt@b1504a8"
# EasyEdit's flattened CounterFact is released only as a Google Drive zip; the one public
# per-file copy found that is byte-identical (CRLF line endings included) is a third party's.
KS = "https://raw.githubusercontent.com/Jometeorie/KnowledgeSpread/51d7402617c2e52bde0dc11b76e400c3725a181a/data/counterfact"  # noqa: E501
KS_EVIDENCE = "byte-identical at Jometeorie/KnowledgeSpread@51d7402 (third party; EasyEdit's own release is a Google Drive zip)"  # noqa: E501

GU_TASKS = [  # (file, sha256)
    ("test-reasoning.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),  # noqa: E501
    ("test-NLI.tsv", "5fb9b78108e99f6e505a16c85e4655ac71e988fa1b8be7eff5d57890ef9cbd91"),
    ("test-OpenDomainQA.jsonl", "024b6a9b02cd1cdea0ce0053d8f6504c6fb6c47ebb08ae886d99ee76eb6a163a"),  # noqa: E501
    ("test-ClosedDomainQA.jsonl", "8b436c78db44506422bb81e3335c8b1547230d4527547aaca2b36a5846bb42a5"),  # noqa: E501
    ("test-summarization.json", "f291b34ea2a851c4fd67bc9e1c05003f0dde2c2ae1a501ba733b9d97b6166349"),  # noqa: E501
    ("test-NER.txt", "c02eb19809eafb83998326a0481942eb37d96f31826ae387cfe8773699969f5b"),
    ("test-SentimentAnalysis.tsv", "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"),  # noqa: E501
]  # fmt: skip

SOURCES: dict[str, Source] = {
    "zsre/zsre_mend_eval_portability_gpt4.json": Source(
        f"{GU}/edited-data/zsre_mend_eval_portability_gpt4.json",
        "0cf155da229b2eccae19fcfe5f7a09523363d357f5f15508d1521f495ad5ecd9",
        GU_EVIDENCE,
    ),
    "counterfact/counterfact-edit.json": Source(
        f"{KS}/counterfact-edit.json",
        "bfe31a7081932739406e282bb625d74222549c3386c15b1df3dfbc3978c69eec",
        KS_EVIDENCE,
    ),
    "counterfact/counterfact-train.json": Source(
        f"{KS}/counterfact-train.json",
        "f7d443ffb0c5da6cbe816cdac45281ccb3f204b8a840f00d07a4aafa949bcd76",
        KS_EVIDENCE,
    ),
    "counterfact/counterfact-val.json": Source(
        f"{KS}/counterfact-val.json",
        "42b44645471020a9419d183deb9e113e82941380046861770ea0083dabd13982",
        KS_EVIDENCE,
    ),
    **{
        f"tasks/{name}": Source(f"{GU}/task-data/{name}", sha, GU_EVIDENCE)
        for name, sha in GU_TASKS
    },
}
# Files without a public per-file source: the error that reports them missing says so.
NO_SOURCE = {
    "counterfact/counterfact_portability_gpt4.json": (
        "released only inside EasyEdit's Google Drive zip (https://drive.google.com/file/d/"
        "1WRo2SqqgNtZF11Vq0sF5nL_-bHi18Wi4, file 'portability/One Hop/"
        "counterfact_portability_gpt4.json'); place it under $ELDER_DATA_DIR by hand "
        "(sha256 9633c56054870e7356f6ba484d11d338f1511fd1aba1a06525ab167ccf72a15e)"
    ),
}
# Folders fetched file by file: MuTual dev as Gu et al. ship it, 886 dev_<i>.txt files.
FOLDERS: dict[str, list[str]] = {}


def _folder(path: str, base: str, manifest: str) -> None:
    lines = (Path(__file__).parent / manifest).read_text().split("\n")
    names = [line.split() for line in lines if line.strip()]
    FOLDERS[path] = [name for name, _ in names]
    for name, sha256 in names:
        SOURCES[f"{path}/{name}"] = Source(f"{base}/{name}", sha256, GU_EVIDENCE)


_folder("tasks/test-dialogue", f"{GU}/task-data/test-dialogue", "test-dialogue.sha256")
