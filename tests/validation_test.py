"""Tests of the argument checks of l0enc.validation added for the settings."""

import pytest

from l0enc import validation


@pytest.mark.parametrize('value', [1e-9, 0.5, 1, None])
def test_check_fraction_accepts_numbers_in_the_half_open_unit_interval(value):
  validation.check_fraction('nonzero_prob', value)


@pytest.mark.parametrize('value', [0, -0.1, 1.5, float('nan')])
def test_check_fraction_names_the_argument(value):
  with pytest.raises(ValueError, match=r'nonzero_prob must be in \(0, 1\]'):
    validation.check_fraction('nonzero_prob', value)


def test_check_choice_names_the_argument_and_the_choices():
  validation.check_choice('training', 'stagewise', ('stagewise', 'end'))
  with pytest.raises(ValueError, match=r"training must be one of "
                     r"\('stagewise', 'end'\), got 'both'"):
    validation.check_choice('training', 'both', ('stagewise', 'end'))
