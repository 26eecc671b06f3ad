"""Data layer of bias-atlas: task datasets, counterfactuals and intrinsic bias benchmarks.

Task data (occupation classification with binary gender): :func:`load_bug`, :func:`load_bias_in_bios`,
:func:`load_table_task`, with :func:`split_task` and :func:`rebalance_genders`. Counterfactuals:
:class:`GenderSwapper`, :func:`counterfactual`, :func:`counterfactual_augment` (CDA training sets). Intrinsic
benchmarks: SEAT, CrowS-Pairs, StereoSet, WinoBias, Winogender. Shared data is found by :func:`data_root`.
"""

from pipeline.data.bias_in_bios import BIOS_HUB_ID, BIOS_PROFESSIONS, load_bias_in_bios
from pipeline.data.bug import BUG_FILES, DEFAULT_MIN_PER_CLASS, RARE_CLASS, fix_mojibake, load_bug
from pipeline.data.cda import CDA_MODES, counterfactual_augment
from pipeline.data.counterfactual import GenderSwapper, counterfactual, read_swap_list
from pipeline.data.crows_pairs import CROWS_BIAS_TYPES, CrowsPair, load_crows_pairs
from pipeline.data.itemset import ItemSet
from pipeline.data.paths import DATA_ENV_VAR, data_root
from pipeline.data.seat import GENDER_SEAT_TESTS, SeatTest, load_gender_seat_tests, load_seat
from pipeline.data.stereoset import BLANK, STEREOSET_BIAS_TYPES, StereoSetItem, fill, load_stereoset, parse_choices
from pipeline.data.task import (
    FEMALE,
    GENDER_NAMES,
    MALE,
    SPLIT_NAMES,
    TaskData,
    load_table_task,
    parse_genders,
    rebalance_genders,
    split_indices,
    split_task,
)
from pipeline.data.weighted import WeightedTaskData
from pipeline.data.winobias import PRONOUN_GENDER, WinoBiasItem, load_winobias, load_winobias_all
from pipeline.data.winogender import WINOGENDER_PRONOUNS, WinogenderItem, load_winogender, occupation_stats

__all__ = [
    "BIOS_HUB_ID",
    "BIOS_PROFESSIONS",
    "BLANK",
    "BUG_FILES",
    "CDA_MODES",
    "CROWS_BIAS_TYPES",
    "DATA_ENV_VAR",
    "DEFAULT_MIN_PER_CLASS",
    "FEMALE",
    "GENDER_NAMES",
    "GENDER_SEAT_TESTS",
    "MALE",
    "PRONOUN_GENDER",
    "RARE_CLASS",
    "SPLIT_NAMES",
    "STEREOSET_BIAS_TYPES",
    "WINOGENDER_PRONOUNS",
    "CrowsPair",
    "GenderSwapper",
    "ItemSet",
    "SeatTest",
    "StereoSetItem",
    "TaskData",
    "WeightedTaskData",
    "WinoBiasItem",
    "WinogenderItem",
    "counterfactual",
    "counterfactual_augment",
    "data_root",
    "fill",
    "fix_mojibake",
    "load_bias_in_bios",
    "load_bug",
    "load_crows_pairs",
    "load_gender_seat_tests",
    "load_seat",
    "load_stereoset",
    "load_table_task",
    "load_winobias",
    "load_winobias_all",
    "load_winogender",
    "occupation_stats",
    "parse_choices",
    "parse_genders",
    "read_swap_list",
    "rebalance_genders",
    "split_indices",
    "split_task",
]
