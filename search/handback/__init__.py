"""What a run hands back: the chosen network as a module or ONNX (float or int8) with its best
weights, and the weights a run keeps."""
