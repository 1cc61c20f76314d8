import DoTCore
