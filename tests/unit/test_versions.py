"""Versions are pinned in stack/versions.env; requirements.txt must agree where they overlap."""

import re

from binance_cdc.settings import PROJECT_ROOT
from stack.paths import versions


def test_pyspark_matches_the_spark_jars():
    requirements = (PROJECT_ROOT / "requirements.txt").read_text()
    pinned = re.search(r"^pyspark==(\S+)$", requirements, flags=re.M).group(1)
    assert pinned == versions()["SPARK_VERSION"]


def test_every_requirement_is_pinned():
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][^\s]*", line), line
