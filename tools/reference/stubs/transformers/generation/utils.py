GenerateOutput = object
