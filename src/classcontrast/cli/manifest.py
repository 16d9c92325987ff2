"""What the command line knows before torch is imported: the methods and their options, the contrasts —
generated from their registrations by ``python tools/manifest.py`` (do not edit; a test keeps it current) — and the
model families and their options, read from the models package's ``families.json`` (generated alike). Plain data."""

from __future__ import annotations

import json
from pathlib import Path

_FAMILIES = json.loads((Path(__file__).resolve().parents[1] / "models" / "families.json").read_text(encoding="utf-8"))
DEFAULT_MODEL: str = _FAMILIES["default_model"]
FAMILIES: tuple[dict[str, object], ...] = tuple(_FAMILIES["families"])
FAMILY_OPTIONS: dict[str, dict[str, str]] = _FAMILIES["family_options"]

METHODS = {'gradient': ('keep_channels',),
 'gradient_x_input': ('keep_channels',),
 'linear_approx': ('layer', 'relu', 'eigen_smooth', 'aug_smooth'),
 'gradcam': ('layer', 'relu', 'eigen_smooth', 'aug_smooth'),
 'xgradcam': ('layer', 'relu', 'eigen_smooth', 'aug_smooth'),
 'fullgrad': ('abs',),
 'vit_gradcam': ('layer', 'relu'),
 'attention_rollout': ('relu', 'discard_ratio'),
 'integrated_gradients': ('steps', 'baseline', 'integration', 'keep_channels', 'internal_batch_size'),
 'smoothgrad': ('samples', 'sigma', 'seed', 'squared', 'keep_channels', 'internal_batch_size'),
 'lrp': ('composite', 'canonizer', 'keep_channels'),
 'gradcam_plus_plus': ('layer', 'relu', 'eigen_smooth', 'aug_smooth'),
 'layercam': ('layer', 'relu', 'eigen_smooth', 'aug_smooth'),
 'hirescam': ('layer', 'relu', 'eigen_smooth', 'aug_smooth'),
 'guided_backprop': ('keep_channels',),
 'guided_gradcam': ('layer', 'relu', 'keep_channels'),
 'occlusion': ('window', 'stride', 'baseline', 'keep_channels', 'internal_batch_size'),
 'feature_ablation': ('segments', 'baseline', 'internal_batch_size'),
 'kernel_shap': ('segments', 'baseline', 'samples', 'seed', 'internal_batch_size'),
 'rise': ('samples', 'cells', 'keep', 'seed', 'centred', 'internal_batch_size'),
 'scorecam': ('layer', 'relu', 'internal_batch_size', 'eigen_smooth', 'aug_smooth'),
 'ablationcam': ('layer', 'relu', 'ablation', 'internal_batch_size', 'eigen_smooth', 'aug_smooth'),
 'eigencam': ('layer', 'relu', 'aug_smooth'),
 'eigengradcam': ('layer', 'relu', 'aug_smooth'),
 'gradient_shap': ('baselines', 'samples', 'stdevs', 'seed', 'keep_channels', 'internal_batch_size'),
 'deconvolution': ('keep_channels',),
 'deeplift': ('baseline', 'keep_channels', 'internal_batch_size'),
 'deeplift_shap': ('baselines', 'keep_channels', 'internal_batch_size'),
 'lime': ('segments', 'baseline', 'samples', 'seed', 'internal_batch_size')}

METHOD_SPELLINGS = {'gradient': 'gradient',
 'saliency': 'gradient',
 'vanillagradient': 'gradient',
 'gradientxinput': 'gradient_x_input',
 'inputxgradient': 'gradient_x_input',
 'linearapprox': 'linear_approx',
 'linearapproximation': 'linear_approx',
 'gradcam': 'gradcam',
 'layergradcam': 'gradcam',
 'xgradcam': 'xgradcam',
 'fullgrad': 'fullgrad',
 'vitgradcam': 'vit_gradcam',
 'attentionrollout': 'attention_rollout',
 'integratedgradients': 'integrated_gradients',
 'ig': 'integrated_gradients',
 'smoothgrad': 'smoothgrad',
 'lrp': 'lrp',
 'gradcamplusplus': 'gradcam_plus_plus',
 'gradcampp': 'gradcam_plus_plus',
 'layercam': 'layercam',
 'hirescam': 'hirescam',
 'guidedbackprop': 'guided_backprop',
 'guidedbackpropagation': 'guided_backprop',
 'guidedgradcam': 'guided_gradcam',
 'occlusion': 'occlusion',
 'featureablation': 'feature_ablation',
 'kernelshap': 'kernel_shap',
 'rise': 'rise',
 'scorecam': 'scorecam',
 'ablationcam': 'ablationcam',
 'eigencam': 'eigencam',
 'eigengradcam': 'eigengradcam',
 'gradientshap': 'gradient_shap',
 'expectedgradients': 'gradient_shap',
 'deconvolution': 'deconvolution',
 'deconvnet': 'deconvolution',
 'deeplift': 'deeplift',
 'deepliftshap': 'deeplift_shap',
 'lime': 'lime'}

CONTRASTS = ('original', 'mean', 'max', 'weighted', 'probability', 'finer', 'finer_mean', 'rest')

METHOD_OPTIONS = {'ablation': {'type': 'float',
              'help': "ablationcam: the value of an ablated channel (default: pytorch-grad-cam's rule)"},
 'abs': {'type': 'bool', 'help': "fullgrad: the original abs'ed FullGrad"},
 'aug_smooth': {'type': 'bool',
                'help': 'linear_approx, gradcam, xgradcam, gradcam_plus_plus, layercam, hirescam, scorecam, '
                        'ablationcam, eigencam, eigengradcam: the mean over flipped and scaled inputs '
                        "(pytorch-grad-cam's test-time augmentation)"},
 'baseline': {'type': 'str',
              'help': 'integrated_gradients, deeplift: zeros | blur (zeros); occlusion: the value put in (a '
                      'number) (0.0); feature_ablation, kernel_shap, lime: the value a segment takes when switched '
                      'off (0.0)'},
 'baselines': {'type': 'str',
               'help': 'gradient_shap: zeros | blur, or a tensor (N, C, *S) of baselines drawn from (zeros); '
                       'deeplift_shap: zeros | blur, or a tensor (N, C, *S) of baselines (zeros)'},
 'canonizer': {'type': 'str', 'help': 'lrp: auto | none (auto)'},
 'cells': {'type': 'int', 'help': 'rise: mask cells per side (7)'},
 'centred': {'type': 'bool',
             'help': 'rise: E[O | pixel kept] − E[O]; --no-centred: the original RISE (True)',
             'negatable': True},
 'composite': {'type': 'str', 'help': 'lrp: a zennit composite (epsilon_plus_flat)'},
 'discard_ratio': {'type': 'float', 'help': 'attention_rollout: drop this fraction of the weakest links (0.0)'},
 'eigen_smooth': {'type': 'bool',
                  'help': 'linear_approx, gradcam, xgradcam, gradcam_plus_plus, layercam, hirescam, scorecam, '
                          "ablationcam: the first principal component of the CAM's per-channel terms "
                          "(pytorch-grad-cam's)"},
 'integration': {'type': 'str',
                 'help': 'integrated_gradients: riemann_left | riemann_right | riemann_middle | riemann_trapezoid '
                         '| gausslegendre (gausslegendre)'},
 'internal_batch_size': {'type': 'int',
                         'help': 'integrated_gradients, smoothgrad, gradient_shap, deeplift, deeplift_shap: rows '
                                 '(path points, noisy copies) per forward pass: bounds memory, the maps are the '
                                 'same; occlusion, feature_ablation, kernel_shap, rise, scorecam, ablationcam, '
                                 'lime: perturbed inputs per forward pass: bounds memory, the maps are the same'},
 'keep': {'type': 'float', 'help': 'rise: probability that a mask cell is kept (0.5)'},
 'keep_channels': {'type': 'bool',
                   'help': 'gradient, gradient_x_input, integrated_gradients, smoothgrad, lrp, guided_backprop, '
                           'guided_gradcam, occlusion, gradient_shap, deconvolution, deeplift, deeplift_shap: '
                           'per-channel maps in --save-maps (drawn: their sum)'},
 'layer': {'type': 'str',
           'help': 'linear_approx, gradcam, xgradcam, gradcam_plus_plus, layercam, hirescam, guided_gradcam, '
                   'scorecam, ablationcam, eigencam, eigengradcam: the layer (a module name, e.g. features.40); '
                   'vit_gradcam: the ViT block (an index or a module name)'},
 'relu': {'type': 'bool',
          'help': 'linear_approx, gradcam, xgradcam, vit_gradcam, attention_rollout, gradcam_plus_plus, layercam, '
                  'hirescam, guided_gradcam, scorecam, ablationcam, eigencam, eigengradcam: the textbook ReLU on '
                  'the map'},
 'samples': {'type': 'int',
             'help': 'smoothgrad: noisy copies (25); kernel_shap: coalitions (all of them, exact Shapley values, '
                     'when 2^segments is fewer) (256); rise: masks (1000); gradient_shap: draws per image (5); '
                     'lime: random coalitions (256)'},
 'seed': {'type': 'int', 'help': 'smoothgrad, kernel_shap, rise, gradient_shap, lime: random seed (0)'},
 'segments': {'type': 'int', 'help': 'feature_ablation, kernel_shap, lime: SLIC superpixels per image'},
 'sigma': {'type': 'float', 'help': "smoothgrad: noise std as a fraction of the image's range (0.15)"},
 'squared': {'type': 'bool', 'help': 'smoothgrad: SmoothGrad² (mean of squared gradients)'},
 'stdevs': {'type': 'float', 'help': "gradient_shap: the input noise's standard deviation (0: none) (0.0)"},
 'steps': {'type': 'int', 'help': 'integrated_gradients: path points (32)'},
 'stride': {'type': 'sizes',
            'help': "occlusion: the window's step: S (every dimension) or C,H,W as Captum's strides (default: half "
                    'the window)'},
 'window': {'type': 'sizes',
            'help': "occlusion: the sliding window: W (a WxW window over all channels) or C,H,W as Captum's "
                    'sliding_window_shapes (default: an eighth of each side)'}}
