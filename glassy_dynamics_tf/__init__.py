"""glassy_dynamics_tf: predict glassy dynamics from static structure.

Reproduction of Bapst et al., "Unveiling the predictive power of static
structure in glassy systems", Nature Physics 16, 448 (2020), in TensorFlow 2.
See DESIGN.md beside the project for the data flow.
"""

__version__ = "0.1.0"
