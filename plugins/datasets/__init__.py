"""Built-in data set readers: one module per benchmark release (see README.md in this folder)."""

from ferzoo import DatasetSpec, hookimpl

__version__ = "0.2.0"

_P = "ferzoo_plugins.datasets"

#: name -> (module, splits, description)
READERS = {
    "fer2013": ("fer2013", ("train", "val", "test"),
                "FER-2013: fer2013.csv or the image-folder release (train=Training, val=PublicTest, test=PrivateTest)"),
    "rafdb": ("rafdb", ("train", "test"), "RAF-DB basic: EmoLabel/list_patition_label.txt + Image/aligned"),
    "affectnet": ("affectnet", ("train", "val", "test"),
                  "AffectNet manual annotations (training/validation.csv or the 4G train_set/val_set); 7 or 8 classes"),
    "sfew": ("sfew", ("train", "val", "test"), "SFEW 2.0: Train/<Class>, Val/<Class> (test = Val with test_is_val)"),
    "ckplus": ("ckplus", ("train", "val", "test"),
               "CK+: cohn-kanade-images + Emotion (last frames) or CK+48 crops; subject-independent folds"),
    "jaffe": ("jaffe", ("train", "val", "test"), "JAFFE: XX.YYn.NNN.tiff palette TIFFs; subject-independent folds"),
    "ferg": ("ferg", ("train", "val", "test"), "FERG-DB: FERG_DB_256/<character>/<character>_<expression>/*.png"),
    "mmi": ("mmi", ("train", "val", "test"), "MMI: Sessions/<id>/session.xml + video or frames; apex frames, folds"),
    "oulu_casia": ("oulu_casia", ("train", "val", "test"),
                   "Oulu-CASIA: OriginalImg/VL/Strong/P###/<Expression>/*.jpeg; last frames, folds"),
    "folder": ("folder", ("train", "val", "test"), "generic <split>/<class>/<image> folder tree"),
}


#: how a release's faces are framed, as the photo crop rule that matches them (ferzoo.faces.FaceCrop fields).
#: FER-2013: MTCNN's box on its 48x48 crops is 1.04x the crop's side and centred, eyes 4.8 degrees from level
#: (median, measured on PublicTest: README "From a photo to an answer"): the box itself, eyes level.
FACE_CROPS = {"fer2013": {"detector": "mtcnn", "margin": 0.0, "align": "eyes"}}
#: the same in words (the card's ``input_spec.face_alignment``)
FACE_ALIGNMENTS = {"fer2013": "FER-2013's registered 48x48 gray crops (the face fills the image)"}


@hookimpl
def register_datasets(register):
    register(DatasetSpec(
        name="synthetic", loader="ferzoo.data:synthetic", splits=("train", "val", "test"),
        description="generated blob 'faces' (no download): quick start and smoke tests"))
    for name, (module, splits, description) in READERS.items():
        register(DatasetSpec(name=name, loader=f"{_P}.{module}:load", splits=splits, description=description,
                             face_crop=FACE_CROPS.get(name), face_alignment=FACE_ALIGNMENTS.get(name)))
