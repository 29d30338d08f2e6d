"""`import kerastorch` stays cheap: pandas, torchinfo, prettytable, matplotlib and IPython load when first needed,
and the optional extras (MLflow, ONNX, Hugging Face, scikit-learn) only where used."""
import subprocess
import sys


def test_import_kerastorch_does_not_import_the_heavy_display_packages():
    code = ("import sys, torch; import kerastorch; "
            "print(sorted({'pandas', 'torchinfo', 'prettytable', 'matplotlib', 'IPython', 'mlflow', 'onnx', "
            "'onnxruntime', 'onnxscript', 'transformers', 'datasets', 'sklearn', 'tensorboard'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_they_load_when_used():
    code = ("import sys, torch, kerastorch as kt; m = kt.Model.wrap(torch.nn.Linear(2, 1)); "
            "m.summary(input_shape=(2,), print_fn=None); m.compile('sgd', 'mse', device='cpu'); "
            "m.fit(torch.zeros(4, 2), torch.zeros(4, 1), verbose=0); "
            "print(sorted({'pandas', 'torchinfo'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['pandas', 'torchinfo']"
