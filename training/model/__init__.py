"""What the paper adds to a transformer, whichever backbone it is: MoT layers (``mot``), Anchor-Guided Routing
(``routing``, ``anchors``) and the MATS mask curriculum (``curriculum``)."""
