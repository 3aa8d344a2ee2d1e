"""PTB-XL reading: the CSVs, WFDB headers, lead order and bitwise agreement with wfdb.rdsamp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wfdb
from wfdb_fixtures import PTBXL_NAMES, digital, write_record

from ecgadapt.constants import LEADS
from ecgadapt.data.ptbxl import (
    check_rate,
    read_database,
    read_header,
    read_record,
    read_statements,
    record_base,
)
from ecgadapt.errors import ConfigError


def test_read_database_parses_ids_folds_and_codes(ptbxl500: Path) -> None:
    db = read_database(ptbxl500)
    assert len(db) == 500
    assert db.index.tolist() == list(range(1, 501))
    assert db.at[1, "scp_codes"] == {"NORM": 100.0, "LVOLT": 0.0, "SR": 0.0}
    assert db.at[8, "strat_fold"] == 9 and db["strat_fold"].dtype == np.int64
    assert db.at[1, "patient_id"] == 15709
    assert sorted(db["strat_fold"].unique().tolist()) == list(range(1, 11))


def test_read_statements_is_sorted_with_integer_flags(ptbxl500: Path) -> None:
    st = read_statements(ptbxl500)
    assert len(st) == 71
    assert list(st.index) == sorted(st.index)
    assert st.at["NORM", "diagnostic"] == 1 and st.at["SR", "diagnostic"] == 0
    assert st.at["SR", "rhythm"] == 1 and st.at["LVOLT", "form"] == 1
    assert st.at["ASMI", "diagnostic_subclass"] == "AMI"


@pytest.mark.parametrize("rate", [100, 500])
def test_read_record_is_bitwise_wfdb_in_standard_lead_order(ptbxl500: Path, rate: int) -> None:
    db = read_database(ptbxl500)
    for ecg_id in (1, 77, 500):
        base = record_base(ptbxl500, db, ecg_id, rate)
        x = read_record(base, rate)
        ref, fields = wfdb.rdsamp(str(base))
        assert [n.upper() for n in fields["sig_name"]] == [lead.upper() for lead in LEADS]
        assert x.dtype == np.float32 and x.shape == (12, 10 * rate)
        np.testing.assert_array_equal(x, ref.T.astype(np.float32))


def test_read_header_fields(ptbxl500: Path) -> None:
    h = read_header(ptbxl500 / "records500" / "00000" / "00001_hr")
    assert (h.n_sig, h.fs, h.sig_len) == (12, 500.0, 5000)
    assert h.sig_names == PTBXL_NAMES
    assert h.gains == (1000.0,) * 12 and h.baselines == (0,) * 12
    assert h.simple


def test_leads_are_reordered_case_insensitively(tmp_path: Path) -> None:
    d = digital(1, 200)
    shuffled = [10, 3, 0, 11, 5, 1, 7, 2, 9, 4, 6, 8]
    names = [PTBXL_NAMES[i].lower() for i in shuffled]  # e.g. "avr", "v5"
    base = write_record(tmp_path, "rec", d[:, shuffled], 100, names)
    x = read_record(base, 100)
    np.testing.assert_array_equal(x, (d.T / 1000.0).astype(np.float32))


def test_other_wfdb_formats_go_through_wfdb_and_agree(tmp_path: Path) -> None:
    d = digital(2, 300) // 2  # format 212 holds 12-bit samples
    base = write_record(tmp_path, "rec212", d, 500, fmt="212")
    assert not read_header(base).simple
    x = read_record(base, 500)
    ref, _ = wfdb.rdsamp(str(base))
    np.testing.assert_array_equal(x, ref.T.astype(np.float32))


def test_check_rate_accepts_only_ptbxl_rates() -> None:
    assert check_rate(100) == 100 and check_rate(500) == 500
    with pytest.raises(ConfigError, match="100, 500"):
        check_rate(250)


def test_record_base_uses_the_rate_column(ptbxl500: Path) -> None:
    db = read_database(ptbxl500)
    assert record_base(ptbxl500, db, 3, 100) == ptbxl500 / "records100/00000/00003_lr"
    assert record_base(ptbxl500, db, 3, 500) == ptbxl500 / "records500/00000/00003_hr"
    assert isinstance(db, pd.DataFrame)
