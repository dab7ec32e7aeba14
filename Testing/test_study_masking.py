"""Number masking on realistic PET/CT findings: measurement numbers become [#], anatomy and counts stay."""
import pytest

from petar.study import mask_numbers

CASES = [
    ("FDG-avid left axillary lymph node measuring 1.2 x 0.8 cm with SUVmax 7.1 (series 3, image 104).",
     "FDG-avid left axillary lymph node measuring [#] x [#] cm with SUVmax [#] (series [#], image [#])."),
    ("Hypermetabolic lesion in the L4 vertebral body, SUV max of 12.3, previously 8.2.",
     "Hypermetabolic lesion in the L4 vertebral body, SUV max of [#], previously [#]."),
    ("Right upper lobe nodule, 15 mm, SUVmax 4.5 (3:87), increased from 2.1.",
     "Right upper lobe nodule, [#] mm, SUVmax [#] ([#]), increased from [#]."),
    ("SUVmax 7.1 and 3 additional nodes in level II.",
     "SUVmax [#] and 3 additional nodes in level II."),
    ("Segment 4 liver lesion with SUVmax: 6.2/5.0; 7th rib lesion SUV 3.",
     "Segment 4 liver lesion with SUVmax: [#]/[#]; 7th rib lesion SUV [#]."),
    ("Mediastinal nodes (images 100-110) with maximum SUV 5 in the subcarinal station.",
     "Mediastinal nodes (images [#]-[#]) with maximum SUV [#] in the subcarinal station."),
    ("DOTATATE-avid pancreatic tail mass, 2.4 cm, SUVmax 38.2 (previously 41.0), axial slice 212.",
     "DOTATATE-avid pancreatic tail mass, [#] cm, SUVmax [#] (previously [#]), axial slice [#]."),
    ("Left external iliac node, SUVpeak 4.1, SUVmean 2.9, MTV 3.2 mL.",
     "Left external iliac node, SUVpeak [#], SUVmean [#], MTV [#] mL."),
    ("Prostate bed focus with SUV of 6 on image #57 of series 4.",
     "Prostate bed focus with SUV of [#] on image #[#] of series [#]."),
    ("No FDG-avid lesion. Deauville 4 residual mass at T12.",
     "No FDG-avid lesion. Deauville 4 residual mass at T12."),
    ("Two right hilar nodes, the larger 11 x 9 mm, SUVmax 5,6.",
     "Two right hilar nodes, the larger [#] x [#] mm, SUVmax [#]."),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_realistic_findings(text, expected):
    assert mask_numbers(text) == expected


def test_masking_is_idempotent_and_keeps_text_without_numbers():
    for text, expected in CASES:
        assert mask_numbers(expected) == expected
    assert mask_numbers("Physiologic uptake in the bowel.") == "Physiologic uptake in the bowel."


def test_categories_can_be_chosen():
    text = "Left axillary node 1.5 cm, SUVmax 7.1, image 104."
    assert mask_numbers(text, ["suv"]) == "Left axillary node 1.5 cm, SUVmax [#], image 104."
    assert mask_numbers(text, ["size"]) == "Left axillary node [#] cm, SUVmax 7.1, image 104."
    assert mask_numbers(text, ["slice"]) == "Left axillary node 1.5 cm, SUVmax 7.1, image [#]."
    assert mask_numbers(text, []) == text
    with pytest.raises(ValueError, match="unknown masking categories"):
        mask_numbers(text, ["dates"])
